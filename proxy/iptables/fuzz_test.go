package iptables

import (
	"context"
	"net/netip"
	"testing"
)

// FuzzRestore feeds arbitrary input to the restore parser and the model: it
// must return an error or apply, never panic, and whatever it accepted must
// save to text that restores to the same table, and be traceable.
func FuzzRestore(f *testing.F) {
	f.Add([]byte("*nat\n:A - [0:0]\n-A A -d 192.0.2.1 -p tcp -m tcp --dport 80 -j DNAT --to-destination 198.18.1.1:8080\n-A PREROUTING -j A\nCOMMIT\n"))
	f.Add([]byte("*filter\n:F - [0:0]\n-A F -m comment --comment \"x y\" -m conntrack --ctstate NEW -j REJECT\nCOMMIT\n"))
	f.Add([]byte("*nat\n:S - [0:0]\n-A S -m statistic --mode random --probability 0.5000000000 -g S2\nCOMMIT\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, fam := range []Family{IPv4, IPv6} {
			m := NewModel(fam)
			if err := m.Restore(context.Background(), data); err != nil {
				continue
			}
			for _, tb := range []Table{TableNAT, TableFilter, TableMangle} {
				save, err := m.Save(context.Background(), tb)
				if err != nil {
					t.Fatal(err)
				}
				m2 := NewModel(fam)
				if err := m2.Restore(context.Background(), save); err != nil {
					t.Fatalf("saved text does not restore: %v\n%s", err, save)
				}
				save2, _ := m2.Save(context.Background(), tb)
				if string(save) != string(save2) {
					t.Fatalf("save round trip differs:\n%s\n---\n%s", save, save2)
				}
			}
			src, dst := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("198.19.0.1")
			if fam == IPv6 {
				src, dst = netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2")
			}
			tr := Tracer{Model: m}
			_, _ = tr.Trace(Packet{Src: src, Dst: dst, Protocol: "tcp", DstPort: 80, InInterface: "eth0"})
			_, _ = tr.Trace(Packet{Src: src, Dst: dst, Protocol: "udp", DstPort: 53, FromLocal: true})
		}
	})
}
