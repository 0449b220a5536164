//go:build linux

package l2

import (
	"net/netip"
	"testing"

	"golang.org/x/net/bpf"
)

func TestNDPFilter(t *testing.T) {
	prog, ok := bpf.Disassemble(ndpFilter)
	if !ok {
		t.Fatal("filter does not disassemble")
	}
	vm, err := bpf.NewVM(prog)
	if err != nil {
		t.Fatal(err)
	}
	udp := solicitation(macClient, client6, netip.Addr{}, vip6, true)
	udp[ethHeaderLen+6] = 17 // next header UDP
	echo := solicitation(macClient, client6, netip.Addr{}, vip6, true)
	echo[ethHeaderLen+ipv6HeaderLen] = 128 // ICMPv6 echo request
	tests := []struct {
		name  string
		frame []byte
		pass  bool
	}{
		{"Neighbor Solicitation", solicitation(macClient, client6, netip.Addr{}, vip6, true), true},
		{"Neighbor Advertisement", advertisement(macOther, vip6), true},
		{"UDP", udp, false},
		{"ICMPv6 echo", echo, false},
		{"ARP", arpRequest(macClient, client4, vip4), false},
		{"runt", []byte{1, 2, 3}, false},
	}
	for _, tt := range tests {
		n, err := vm.Run(tt.frame)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if (n > 0) != tt.pass {
			t.Errorf("%s: filter keeps %d bytes, want pass=%v", tt.name, n, tt.pass)
		}
		if tt.pass && n < len(tt.frame) {
			t.Errorf("%s: filter cuts the frame to %d of %d bytes", tt.name, n, len(tt.frame))
		}
	}
}
