package server

import (
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"
)

func testPool(n int) *pool {
	p := &pool{}
	for i := range n {
		p.eps = append(p.eps, newEndpoint(netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, 1, byte(i + 1)}), 80)))
	}
	return p
}

func TestRoundRobinSkipsTriedAndEjected(t *testing.T) {
	p := testPool(3)
	now := time.Now().UnixNano()
	seen := map[*endpoint]int{}
	for range 30 {
		seen[p.pick(RoundRobin, nil, now)]++
	}
	for _, e := range p.eps {
		if seen[e] != 10 {
			t.Errorf("round robin: %v picked %d times of 30, want 10", e.addr, seen[e])
		}
	}
	// Ejection after threshold consecutive failures; a success in between resets.
	e0 := p.eps[0]
	e0.failed(now, 2, time.Minute)
	e0.succeeded()
	if e0.failed(now, 2, time.Minute) {
		t.Fatal("ejected after one failure since the last success")
	}
	if !e0.failed(now, 2, time.Minute) {
		t.Fatal("not ejected after two consecutive failures")
	}
	for range 10 {
		if e := p.pick(RoundRobin, nil, now); e == e0 {
			t.Fatal("picked an ejected endpoint while others are available")
		}
	}
	if e := p.pick(RoundRobin, nil, now+int64(time.Minute)); e == nil {
		t.Fatal("nothing picked")
	}
	// Tried endpoints are never picked again; when only ejected ones are left, one of
	// them is used rather than failing the request.
	if e := p.pick(RoundRobin, []*endpoint{p.eps[1], p.eps[2]}, now); e != e0 {
		t.Errorf("only an ejected endpoint untried: picked %v, want it", e)
	}
	if e := p.pick(RoundRobin, p.eps, now); e != nil {
		t.Errorf("all tried: picked %v, want nil", e.addr)
	}
	if e := (&pool{}).pick(RoundRobin, nil, now); e != nil {
		t.Error("empty pool picked something")
	}
}

func TestLeastRequestsPrefersIdle(t *testing.T) {
	p := testPool(4)
	now := time.Now().UnixNano()
	for i, e := range p.eps {
		e.inflight.Store(int64(10 * (i + 1)))
	}
	p.eps[3].inflight.Store(0) // the idle one
	counts := map[*endpoint]int{}
	for range 1000 {
		counts[p.pick(LeastRequests, nil, now)]++
	}
	// With two random choices the idle endpoint wins every draw it is in: 1-(3/4)^2.
	if c := counts[p.eps[3]]; c < 350 || c > 520 {
		t.Errorf("idle endpoint picked %d of 1000, want about 437", c)
	}
	if counts[p.eps[2]] != 0 && counts[p.eps[2]] > counts[p.eps[0]] {
		t.Errorf("a busier endpoint was picked more often: %v", counts)
	}
	p.eps[3].ejected.Store(now + int64(time.Hour))
	for range 100 {
		if p.pick(LeastRequests, nil, now) == p.eps[3] {
			t.Fatal("picked the ejected endpoint")
		}
	}
	if e := p.pick(LeastRequests, p.eps[:3], now); e != p.eps[3] {
		t.Errorf("only the ejected one untried: got %v", e)
	}
}

func TestClientOf(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("198.18.9.0/24"), netip.MustParsePrefix("2001:db8::/32")}
	for _, tc := range []struct {
		name, remote string
		hdr          map[string][]string
		want         client
	}{
		{"plain client, spoofed headers", "198.51.100.7:1234",
			map[string][]string{"X-Forwarded-For": {"203.0.113.1"}, "X-Forwarded-Proto": {"https"}, "X-Forwarded-Host": {"evil"}},
			client{ip: netip.MustParseAddr("198.51.100.7"), real: "198.51.100.7", xff: "198.51.100.7", proto: "http", host: "app.example"}},
		{"trusted proxy", "198.18.9.1:1234",
			map[string][]string{"X-Forwarded-For": {"203.0.113.1"}, "X-Forwarded-Proto": {"HTTPS"}, "X-Forwarded-Host": {"front.example"}, "X-Forwarded-Port": {"8443"}},
			client{ip: netip.MustParseAddr("203.0.113.1"), real: "203.0.113.1", xff: "203.0.113.1, 198.18.9.1", proto: "https", host: "front.example", port: "8443"}},
		{"trusted chain: right-most untrusted hop is the client", "198.18.9.1:1",
			map[string][]string{"X-Forwarded-For": {"192.0.2.66, 203.0.113.1", "198.18.9.2"}},
			client{ip: netip.MustParseAddr("203.0.113.1"), real: "203.0.113.1", xff: "192.0.2.66, 203.0.113.1, 198.18.9.2, 198.18.9.1", proto: "http", host: "app.example"}},
		{"garbage hop stops the walk", "198.18.9.1:1",
			map[string][]string{"X-Forwarded-For": {"nonsense, 198.18.9.3"}, "X-Forwarded-Proto": {"gopher"}, "X-Forwarded-Port": {"99999"}},
			client{ip: netip.MustParseAddr("198.18.9.3"), real: "198.18.9.3", xff: "nonsense, 198.18.9.3, 198.18.9.1", proto: "http", host: "app.example"}},
		{"IPv6 trusted proxy, IPv4-mapped client", "[2001:db8::1]:1",
			map[string][]string{"X-Forwarded-For": {"::ffff:198.51.100.9"}},
			client{ip: netip.MustParseAddr("198.51.100.9"), real: "198.51.100.9", xff: "::ffff:198.51.100.9, 2001:db8::1", proto: "http", host: "app.example"}},
	} {
		r := httptest.NewRequest("GET", "http://app.example/", nil)
		r.RemoteAddr = tc.remote
		for k, v := range tc.hdr {
			r.Header[k] = v
		}
		if got := clientOf(r, trusted); got != tc.want {
			t.Errorf("%s:\n got %+v\nwant %+v", tc.name, got, tc.want)
		}
	}
	// Nothing is trusted without a list.
	r := httptest.NewRequest("GET", "http://app.example/", nil)
	r.RemoteAddr = "198.18.9.1:1"
	r.Header.Set("X-Forwarded-For", "203.0.113.1")
	if got := clientOf(r, nil); got.ip != netip.MustParseAddr("198.18.9.1") || got.xff != "198.18.9.1" {
		t.Errorf("no trusted proxies: %+v", got)
	}
}

func TestCleanPath(t *testing.T) {
	for in, want := range map[string]string{
		"": "/", "/": "/", "/a/b": "/a/b", "/a//b/": "/a/b/", "/a/./b": "/a/b", "/a/../b": "/b",
		"/../x": "/x", "/a/..": "/", "/a/b/../": "/a/", "*": "/*", "/.well-known/x": "/.well-known/x",
	} {
		if got := cleanPath(in); got != want {
			t.Errorf("cleanPath(%q) = %q, want %q", in, got, want)
		}
	}
}
