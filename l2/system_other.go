//go:build !linux

package l2

import (
	"context"
	"errors"
)

var errUnsupported = errors.New("l2: only Linux is supported")

type unsupported struct{}

func newKernel() system { return unsupported{} }

func (unsupported) links() ([]link, error)              { return nil, errUnsupported }
func (unsupported) watch(context.Context, func()) error { return errUnsupported }
func (unsupported) listenARP(link) (frameConn, error)   { return nil, errUnsupported }
func (unsupported) listenNDP(link) (ndpConn, error)     { return nil, errUnsupported }
