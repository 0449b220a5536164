package membership

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
)

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

func sortedAddrs(a []netip.Addr) []netip.Addr {
	a = slices.Clone(a)
	slices.SortFunc(a, func(x, y netip.Addr) int {
		if x.Is4() != y.Is4() {
			if x.Is4() {
				return -1
			}
			return 1
		}
		return x.Compare(y)
	})
	return slices.Compact(a)
}

func TestMetaRoundTrip(t *testing.T) {
	for _, m := range []Meta{
		{},
		{Leaving: true},
		{Claims: addrs("192.0.2.200")},
		{Claims: addrs("0.0.0.1", "255.255.255.255")},
		{Claims: addrs("2001:db8::2ff", "192.0.2.201", "2001:db8::200", "192.0.2.200", "2001:db8:1::5")},
		{Claims: addrs("::1", "::2", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "::ffff:192.0.2.1"), Leaving: true},
	} {
		b, n := m.Encode(MaxMetaSize)
		if n != len(m.Claims) {
			t.Fatalf("%v: only %d claims fit", m, n)
		}
		got, err := DecodeMeta(b)
		if err != nil {
			t.Fatalf("%v: %v", m, err)
		}
		if got.Leaving != m.Leaving || !slices.Equal(got.Claims, sortedAddrs(m.Claims)) {
			t.Fatalf("%+v came back as %+v", m, got)
		}
	}
}

func TestMetaDropsZonesRepeatsAndInvalid(t *testing.T) {
	m := Meta{Claims: []netip.Addr{netip.MustParseAddr("fe80::1%eth0"), netip.MustParseAddr("fe80::1"), {}, netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.1")}}
	b, n := m.Encode(MaxMetaSize)
	got, err := DecodeMeta(b)
	if err != nil || n != len(m.Claims) || !slices.Equal(got.Claims, addrs("192.0.2.1", "fe80::1")) {
		t.Fatalf("got %v (%d fit), %v", got.Claims, n, err)
	}
}

// TestMetaCapacity states how many claims fit in memberlist's 512 bytes.
func TestMetaCapacity(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	dense := func(first string) func(int) []netip.Addr { // one pool range
		return func(n int) []netip.Addr {
			var out []netip.Addr
			a := netip.MustParseAddr(first)
			for range n {
				a = a.Next()
				out = append(out, a)
			}
			return out
		}
	}
	random4 := func(n int) []netip.Addr {
		var out []netip.Addr
		for range n {
			out = append(out, netip.AddrFrom4([4]byte{byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32())}))
		}
		return out
	}
	random6 := func(n int) []netip.Addr {
		var out []netip.Addr
		for range n {
			var b [16]byte
			for i := range b {
				b[i] = byte(r.Uint32())
			}
			out = append(out, netip.AddrFrom16(b))
		}
		return out
	}
	for _, tt := range []struct {
		name string
		gen  func(int) []netip.Addr
		min  int
	}{
		{"IPv4 from one range", dense("198.18.0.0"), 500},
		{"IPv6 from one range", dense("2001:db8::"), 240},
		{"IPv4 anywhere", random4, 100},
		{"IPv6 anywhere", random6, 25},
	} {
		claims := tt.gen(2000)
		b, n := Meta{Claims: claims}.Encode(MaxMetaSize)
		if len(b) > MaxMetaSize {
			t.Fatalf("%s: %d bytes, over the limit", tt.name, len(b))
		}
		got, err := DecodeMeta(b)
		if err != nil || !slices.Equal(got.Claims, sortedAddrs(claims[:n])) {
			t.Fatalf("%s: decoded %d claims (%v), want the first %d given", tt.name, len(got.Claims), err, n)
		}
		if n < tt.min {
			t.Fatalf("%s: %d fit, want at least %d", tt.name, n, tt.min)
		}
		// One more would not have fit: the prefix is the longest.
		if more, _ := (Meta{Claims: claims[:n+1]}).Encode(1 << 20); len(more) <= MaxMetaSize {
			t.Fatalf("%s: %d claims fit but %d were kept", tt.name, n+1, n)
		}
		t.Logf("%s: %d claims in %d bytes", tt.name, n, len(b))
	}
}

func TestDecodeMetaRejects(t *testing.T) {
	valid, _ := Meta{Claims: addrs("192.0.2.1", "192.0.2.5", "2001:db8::1", "2001:db8::9")}.Encode(MaxMetaSize)
	for _, tt := range []struct {
		name string
		b    []byte
	}{
		{"one byte", []byte{1}},
		{"version 0", []byte{0, 0, 0, 0}},
		{"unknown flag in version 1", []byte{1, 2, 0, 0}},
		{"truncated", valid[:len(valid)-1]},
		{"trailing bytes in version 1", append(slices.Clone(valid), 0)},
		{"count larger than the data", []byte{1, 0, 0xff, 0x01, 1, 2}},
		{"repeated IPv4", []byte{1, 0, 2, 5, 0, 0}},
		{"IPv4 past 255.255.255.255", []byte{1, 0, 2, 0xff, 0xff, 0xff, 0xff, 0x0f, 1, 0}},
		{"repeated IPv6", []byte{1, 0, 0, 2, 1, 1, 0, 0}},
		{"number not minimal", []byte{1, 0, 0x81, 0x00, 1, 0}},
		{"number overflows", []byte{1, 0, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0}},
	} {
		if m, err := DecodeMeta(tt.b); err == nil {
			t.Errorf("%s: %x decoded as %+v", tt.name, tt.b, m)
		}
	}
}

func TestDecodeMetaReadsLaterVersions(t *testing.T) {
	b, _ := Meta{Claims: addrs("192.0.2.1"), Leaving: true}.Encode(MaxMetaSize)
	b[0] = 2
	b[1] |= 0x80                          // a flag version 1 does not know
	b = append(b, 0xde, 0xad, 0xbe, 0xef) // fields version 1 does not know
	m, err := DecodeMeta(b)
	if err != nil || !m.Leaving || !slices.Equal(m.Claims, addrs("192.0.2.1")) {
		t.Fatalf("version 2 read as %+v, %v", m, err)
	}
}

func FuzzDecodeMeta(f *testing.F) {
	for _, m := range []Meta{{}, {Leaving: true}, {Claims: addrs("192.0.2.200", "192.0.2.201", "2001:db8::200")}} {
		b, _ := m.Encode(MaxMetaSize)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeMeta(b)
		if err != nil || len(b) == 0 {
			return
		}
		again, n := m.Encode(1 << 20)
		if n != len(m.Claims) {
			t.Fatalf("re-encoding kept %d of %d claims", n, len(m.Claims))
		}
		if b[0] == metaVersion && !bytes.Equal(again, b) {
			t.Fatalf("%x decodes to %+v, which encodes as %x: version 1 is not canonical", b, m, again)
		}
		m2, err := DecodeMeta(again)
		if err != nil || m2.Leaving != m.Leaving || !slices.Equal(m2.Claims, m.Claims) {
			t.Fatalf("%+v does not survive a round trip: %+v, %v", m, m2, err)
		}
	})
}

func ExampleMeta_Encode() {
	m := Meta{Claims: addrs("192.0.2.200", "192.0.2.201", "2001:db8::200")}
	b, n := m.Encode(MaxMetaSize)
	fmt.Println(len(b), "bytes,", n, "claims")
	// Output: 21 bytes, 3 claims
}
