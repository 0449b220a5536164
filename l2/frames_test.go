package l2

import (
	"net/netip"
	"testing"

	"github.com/mdlayher/arp"
)

func TestGratuitousARP(t *testing.T) {
	request, reply := gratuitousARP(macEth0, vip4)
	for _, f := range [][]byte{request, reply} {
		if len(f) != ethMinFrame {
			t.Errorf("frame is %d bytes, want the Ethernet minimum %d", len(f), ethMinFrame)
		}
	}
	req, rep := mustARP(request), mustARP(reply)
	if req.eth.dst != broadcastMAC || req.eth.src != macEth0 || req.op != arp.OperationRequest ||
		req.sha != macEth0 || req.spa != vip4 || req.tpa != vip4 || req.tha != (hwAddr{}) {
		t.Errorf("request = %+v, want a broadcast request from %s/%s for itself", req, macEth0, vip4)
	}
	// Linux takes a reply as gratuitous (and overrides a fresh cache entry)
	// only when its target hardware address equals the sender's.
	if rep.eth.dst != broadcastMAC || rep.eth.src != macEth0 || rep.op != arp.OperationReply ||
		rep.sha != macEth0 || rep.tha != macEth0 || rep.spa != vip4 || rep.tpa != vip4 {
		t.Errorf("reply = %+v, want a broadcast reply %s is at %s with target = sender", rep, vip4, macEth0)
	}
}

func TestUnsolicitedNA(t *testing.T) {
	f, err := unsolicitedNA(macEth0, eth0.linkLocal, vip6)
	if err != nil {
		t.Fatal(err)
	}
	a := mustNA(f) // also checks hop limit 255 and the checksum
	if a.eth.dst != (hwAddr{0x33, 0x33, 0, 0, 0, 1}) || a.dst != allNodes || a.eth.src != macEth0 || a.src != eth0.linkLocal {
		t.Errorf("sent %s/%s -> %s/%s, want %s/%s -> 33:33:00:00:00:01/ff02::1", a.eth.src, a.src, a.eth.dst, a.dst, macEth0, eth0.linkLocal)
	}
	if a.target != vip6 || !a.hasTLLA || a.tlla != macEth0 || !a.override || a.solicited || a.router {
		t.Errorf("advertisement %+v, want %s at %s with O=1 S=0 R=0", a, vip6, macEth0)
	}
}

func TestChecksumMatchesNDP(t *testing.T) {
	// ndp.MarshalMessageChecksum computes the checksum independently; the
	// parser accepts its frames and refuses any change to the message.
	f := solicitation(macClient, client6, vip6, vip6, true)
	if _, err := parseNDPFrame(f); err != nil {
		t.Fatalf("a frame built by mdlayher/ndp: %v", err)
	}
	for i := ethHeaderLen + 8; i < len(f); i++ { // every byte the checksum covers
		g := append([]byte(nil), f...)
		g[i] ^= 0x01
		if _, err := parseNDPFrame(g); err == nil {
			t.Fatalf("flipping a bit of byte %d went unnoticed", i)
		}
	}
}

func TestParseNDPFrameLengths(t *testing.T) {
	f := solicitation(macClient, client6, netip.Addr{}, vip6, true)
	padded := append(append([]byte(nil), f...), make([]byte, 20)...)
	if _, err := parseNDPFrame(padded); err != nil {
		t.Errorf("Ethernet padding after the packet: %v", err)
	}
	for n := 0; n < len(f); n++ {
		if _, err := parseNDPFrame(f[:n]); err == nil {
			t.Fatalf("a frame cut to %d of %d bytes was accepted", n, len(f))
		}
	}
}
