package allocator

import (
	"math"
	"math/rand/v2"
	"net/netip"
	"testing"
)

func TestParseRange(t *testing.T) {
	tests := []struct {
		in          string
		first, last string // empty: error expected
		str         string
	}{
		{"192.0.2.0/24", "192.0.2.0", "192.0.2.255", "192.0.2.0/24"},
		{" 192.0.2.0/24 ", "192.0.2.0", "192.0.2.255", "192.0.2.0/24"},
		{"192.0.2.7/32", "192.0.2.7", "192.0.2.7", "192.0.2.7/32"},
		{"0.0.0.0/0", "0.0.0.0", "255.255.255.255", "0.0.0.0/0"},
		{"2001:db8::/64", "2001:db8::", "2001:db8::ffff:ffff:ffff:ffff", "2001:db8::/64"},
		{"::/0", "::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "::/0"},
		{"2001:db8::/63", "2001:db8::", "2001:db8:0:1:ffff:ffff:ffff:ffff", "2001:db8::/63"},
		{"192.0.2.10-192.0.2.20", "192.0.2.10", "192.0.2.20", "192.0.2.10-192.0.2.20"},
		{"192.0.2.10 - 192.0.2.20", "192.0.2.10", "192.0.2.20", "192.0.2.10-192.0.2.20"},
		{"192.0.2.0-192.0.2.255", "192.0.2.0", "192.0.2.255", "192.0.2.0/24"},
		{"192.0.2.5-192.0.2.5", "192.0.2.5", "192.0.2.5", "192.0.2.5/32"},
		{"2001:db8::200-2001:db8::2ff", "2001:db8::200", "2001:db8::2ff", "2001:db8::200/120"},
		{"2001:db8::1-2001:db8::3", "2001:db8::1", "2001:db8::3", "2001:db8::1-2001:db8::3"},
		{"", "", "", ""},
		{"   ", "", "", ""},
		{"192.0.2.1/24", "", "", ""},          // host bits
		{"192.0.2.0/33", "", "", ""},          // bad length
		{"192.0.2.20-192.0.2.10", "", "", ""}, // inverted
		{"192.0.2.1-2001:db8::1", "", "", ""}, // mixed families
		{"192.0.2.1", "", "", ""},             // bare address
		{"192.0.2.1-", "", "", ""},
		{"-192.0.2.1", "", "", ""},
		{"192.0.2.1-192.0.2.2-192.0.2.3", "", "", ""},
		{"fe80::1%eth0-fe80::2", "", "", ""},
		{"::ffff:192.0.2.0/120", "", "", ""},
		{"::ffff:192.0.2.1-::ffff:192.0.2.2", "", "", ""},
		{"foo", "", "", ""},
	}
	for _, tt := range tests {
		r, err := ParseRange(tt.in)
		if tt.first == "" {
			if err == nil {
				t.Errorf("ParseRange(%q) = %v, want error", tt.in, r)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseRange(%q): %v", tt.in, err)
			continue
		}
		if r.First != netip.MustParseAddr(tt.first) || r.Last != netip.MustParseAddr(tt.last) {
			t.Errorf("ParseRange(%q) = %s..%s, want %s..%s", tt.in, r.First, r.Last, tt.first, tt.last)
		}
		if got := r.String(); got != tt.str {
			t.Errorf("ParseRange(%q).String() = %q, want %q", tt.in, got, tt.str)
		}
		if r2, err := ParseRange(r.String()); err != nil || r2 != r {
			t.Errorf("round trip of %q: %v, %v", tt.in, r2, err)
		}
	}
}

func TestRangeContains(t *testing.T) {
	r, _ := ParseRange("192.0.2.10-192.0.2.20")
	for s, want := range map[string]bool{
		"192.0.2.10": true, "192.0.2.20": true, "192.0.2.15": true,
		"192.0.2.9": false, "192.0.2.21": false, "::ffff:192.0.2.15": false, "2001:db8::1": false,
	} {
		if got := r.Contains(netip.MustParseAddr(s)); got != want {
			t.Errorf("Contains(%s) = %v", s, got)
		}
	}
	if (Range{}).Contains(netip.MustParseAddr("0.0.0.0")) {
		t.Error("zero Range contains an address")
	}
}

func TestU128(t *testing.T) {
	if got := maxU128.addOne(); got != (u128{}) {
		t.Errorf("max+1 = %v", got)
	}
	if got := (u128{1, 0}).subOne(); got != (u128{0, math.MaxUint64}) {
		t.Errorf("2^64-1 = %v", got)
	}
	if got := maxU128.addSat(u128{0, 1}); got != maxU128 {
		t.Errorf("saturation: %v", got)
	}
	if got := (u128{1, 0}).int64Sat(); got != math.MaxInt64 {
		t.Errorf("int64Sat(2^64) = %d", got)
	}
	for _, s := range []string{"0.0.0.0", "255.255.255.255", "192.0.2.1", "::", "2001:db8::1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"} {
		a := netip.MustParseAddr(s)
		if got := fromU128(toU128(a), a.Is4()); got != a {
			t.Errorf("round trip %s = %s", a, got)
		}
	}
}

func TestBuggyCount(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 500; i++ {
		first := rng.Uint64N(1 << 12)
		last := first + rng.Uint64N(1<<11)
		var want uint64
		for v := first; v <= last; v++ {
			if buggy(u128{0, v}) {
				want++
			}
		}
		if got := buggyCount(first, last); got != want {
			t.Fatalf("buggyCount(%d, %d) = %d, want %d", first, last, got, want)
		}
	}
}
