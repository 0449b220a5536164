//go:build !linux

package proxy

import (
	"errors"

	"github.com/ironlb/ironlb/proxy/iptables"
)

type noConntrack struct{}

func (noConntrack) DeleteFlows(iptables.Family, func(Flow) bool) (int, error) {
	return 0, errors.New("conntrack cleanup needs Linux")
}

func defaultConntrack() ConntrackCleaner { return noConntrack{} }
