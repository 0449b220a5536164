package allocator

import (
	"errors"
	"strings"
	"testing"
)

// FuzzParseRange checks that a parsed range is well formed and that String
// round-trips through ParseRange.
func FuzzParseRange(f *testing.F) {
	for _, s := range []string{"192.0.2.0/24", "192.0.2.10-192.0.2.20", " 2001:db8::/64 ", "2001:db8::1 - 2001:db8::ff", "10.0.0.1/24", "::/0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRange(s)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		if !r.First.IsValid() || !r.Last.IsValid() {
			t.Fatalf("%q: invalid bounds %v", s, r)
		}
		if r.First.Is4() != r.Last.Is4() || r.First.Is4In6() || r.First.Zone() != "" || r.Last.Zone() != "" {
			t.Fatalf("%q: mixed or odd bounds %v", s, r)
		}
		if r.Last.Less(r.First) {
			t.Fatalf("%q: inverted %v", s, r)
		}
		if !r.Contains(r.First) || !r.Contains(r.Last) {
			t.Fatalf("%q: does not contain its bounds", s)
		}
		r2, err := ParseRange(r.String())
		if err != nil || r2 != r {
			t.Fatalf("%q: round trip via %q gave %v, %v", s, r.String(), r2, err)
		}
	})
}

// FuzzRequestFor feeds arbitrary annotation values and spec.loadBalancerIP and
// checks that RequestFor either refuses with ReasonInvalidRequest or returns a
// request with at most one valid address per family, which round-trips.
func FuzzRequestFor(f *testing.F) {
	f.Add("192.0.2.1", "", "", "pool", "key")
	f.Add("192.0.2.1,2001:db8::1", "2001:db8::1, 192.0.2.1", "192.0.2.1", "", "")
	f.Add("", "192.0.2.1,192.0.2.2", "", "", "")
	f.Add("::ffff:10.0.0.1", "", "10.0.0.1", "p", "")
	f.Fuzz(func(t *testing.T, ironIPs, metalIPs, specIP, pool, key string) {
		svc := mkSvc("ns/svc", lbIP(specIP),
			ann(AnnotationLoadBalancerIPs, ironIPs), ann("metallb.universe.tf/loadBalancerIPs", metalIPs),
			ann(AnnotationPool, pool), ann(AnnotationAllowSharedIP, key))
		req, err := RequestFor(svc)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Reason != ReasonInvalidRequest || e.Message == "" {
				t.Fatalf("error %v is not an InvalidRequest *Error", err)
			}
			return
		}
		if len(req.IPs) > 2 || (len(req.IPs) == 2 && req.IPs[0].Is4() == req.IPs[1].Is4()) {
			t.Fatalf("bad IPs %v", req.IPs)
		}
		for _, ip := range req.IPs {
			if !ip.IsValid() || ip.Zone() != "" || ip.Is4In6() {
				t.Fatalf("bad IP %v", ip)
			}
		}
		if req.Pool != strings.TrimSpace(req.Pool) || req.SharingKey != strings.TrimSpace(req.SharingKey) {
			t.Fatalf("untrimmed %q %q", req.Pool, req.SharingKey)
		}
		again, err := RequestFor(mkSvc("ns/svc", ips(joinAddrs(req.IPs)), inPool(req.Pool), shareKey(req.SharingKey)))
		if err != nil || !sameIPSet(again.IPs, req.IPs) || again.Pool != req.Pool || again.SharingKey != req.SharingKey {
			t.Fatalf("round trip: %+v -> %+v, %v", req, again, err)
		}
	})
}
