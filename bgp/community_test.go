package bgp

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestParseCommunity(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Community
		str  string
	}{
		{"65000:100", 65000<<16 | 100, "65000:100"},
		{" 0:0 ", 0, "0:0"},
		{"65535:65535", 0xFFFFFFFF, "65535:65535"},
		{"no-export", CommunityNoExport, "no-export"},
		{"NO-EXPORT", CommunityNoExport, "no-export"},
		{"65535:65281", CommunityNoExport, "no-export"},
		{"no-advertise", CommunityNoAdvertise, "no-advertise"},
		{"local-AS", CommunityNoExportSubconfed, "no-export-subconfed"},
		{"no-export-subconfed", CommunityNoExportSubconfed, "no-export-subconfed"},
		{"no-peer", CommunityNoPeer, "no-peer"},
		{"blackhole", CommunityBlackhole, "blackhole"},
		{"65535:666", CommunityBlackhole, "blackhole"},
		{"graceful-shutdown", CommunityGracefulShutdown, "graceful-shutdown"},
		{"accept-own", CommunityAcceptOwn, "accept-own"},
		{"llgr-stale", CommunityLLGRStale, "llgr-stale"},
		{"no-llgr", CommunityNoLLGR, "no-llgr"},
	} {
		got, err := ParseCommunity(tc.in)
		if err != nil || got != tc.want || got.String() != tc.str {
			t.Errorf("ParseCommunity(%q) = %#x (%q), %v; want %#x (%q)", tc.in, uint32(got), got, err, uint32(tc.want), tc.str)
		}
	}
	for _, in := range []string{"", "65000", "65536:1", "1:65536", "-1:1", "+1:1", "1:2:3", "a:b", "0x10:1", "1 :2", ":1", "1:", "no_export", "65000:100:"} {
		if c, err := ParseCommunity(in); err == nil {
			t.Errorf("ParseCommunity(%q) = %v, want an error", in, c)
		} else if !strings.Contains(err.Error(), "community") {
			t.Errorf("ParseCommunity(%q): error %q does not say what failed", in, err)
		}
	}
}

func TestParseLargeCommunity(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want LargeCommunity
	}{
		{"1:2:3", LargeCommunity{1, 2, 3}},
		{" 64600:1:2 ", LargeCommunity{64600, 1, 2}},
		{"4294967295:4294967295:0", LargeCommunity{4294967295, 4294967295, 0}},
	} {
		got, err := ParseLargeCommunity(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseLargeCommunity(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{"", "1:2", "1:2:3:4", "4294967296:1:1", "1:-2:3", "1::3", "a:b:c", "1:2:3 4"} {
		if c, err := ParseLargeCommunity(in); err == nil {
			t.Errorf("ParseLargeCommunity(%q) = %v, want an error", in, c)
		}
	}
}

// Communities appear in JSON and YAML configuration in their text form.
func TestCommunityJSON(t *testing.T) {
	type doc struct {
		C []Community
		L []LargeCommunity
	}
	var d doc
	if err := json.Unmarshal([]byte(`{"C":["65000:100","no-export"],"L":["1:2:3"]}`), &d); err != nil {
		t.Fatal(err)
	}
	if len(d.C) != 2 || d.C[0] != 65000<<16|100 || d.C[1] != CommunityNoExport || d.L[0] != (LargeCommunity{1, 2, 3}) {
		t.Fatalf("decoded %+v", d)
	}
	b, _ := json.Marshal(d)
	if string(b) != `{"C":["65000:100","no-export"],"L":["1:2:3"]}` {
		t.Fatalf("encoded %s", b)
	}
	if err := json.Unmarshal([]byte(`{"C":["65000"]}`), &d); err == nil {
		t.Fatal("bad community accepted")
	}
}

// FuzzParseCommunity checks that parsing never panics and that what parses
// prints to a string that parses to the same value.
func FuzzParseCommunity(f *testing.F) {
	for _, s := range []string{"65000:100", "no-export", "LOCAL-AS", "65535:65535", " 1:2", "1:2:3", "99999:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCommunity(s)
		if err != nil {
			return
		}
		again, err := ParseCommunity(c.String())
		if err != nil || again != c {
			t.Fatalf("%q -> %v -> %v, %v", s, c, again, err)
		}
	})
}

// FuzzParseLargeCommunity is FuzzParseCommunity for large communities.
func FuzzParseLargeCommunity(f *testing.F) {
	for _, s := range []string{"1:2:3", "4294967295:0:4294967295", "1:2", "01:2:3", "1:2:3:4"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseLargeCommunity(s)
		if err != nil {
			return
		}
		again, err := ParseLargeCommunity(c.String())
		if err != nil || again != c {
			t.Fatalf("%q -> %v -> %v, %v", s, c, again, err)
		}
	})
}
