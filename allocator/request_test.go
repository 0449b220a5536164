package allocator

import (
	"testing"
)

func TestRequestFor(t *testing.T) {
	tests := []struct {
		name      string
		opts      []svcOpt
		wantIPs   string
		wantPool  string
		wantKey   string
		wantError bool
	}{
		{name: "empty"},
		{name: "ironlb single", opts: []svcOpt{ips("192.0.2.1")}, wantIPs: "192.0.2.1"},
		{name: "ironlb dual", opts: []svcOpt{ips("192.0.2.1, 2001:db8::1")}, wantIPs: "192.0.2.1,2001:db8::1"},
		{name: "trailing comma", opts: []svcOpt{ips("192.0.2.1,")}, wantIPs: "192.0.2.1"},
		{name: "empty value is unset", opts: []svcOpt{ips("  ")}},
		{name: "mapped v4 is v4", opts: []svcOpt{ips("::ffff:192.0.2.1")}, wantIPs: "192.0.2.1"},
		{name: "metallb.io", opts: []svcOpt{ann("metallb.io/loadBalancerIPs", "192.0.2.1"), ann("metallb.io/address-pool", "p"), ann("metallb.io/allow-shared-ip", "k")},
			wantIPs: "192.0.2.1", wantPool: "p", wantKey: "k"},
		{name: "metallb.universe.tf", opts: []svcOpt{ann("metallb.universe.tf/loadBalancerIPs", "2001:db8::1"), ann("metallb.universe.tf/address-pool", "p"), ann("metallb.universe.tf/allow-shared-ip", "k")},
			wantIPs: "2001:db8::1", wantPool: "p", wantKey: "k"},
		{name: "ironlb and metallb agree", opts: []svcOpt{ips("192.0.2.1,2001:db8::1"), ann("metallb.io/loadBalancerIPs", "2001:db8::1,192.0.2.1"), inPool("p"), ann("metallb.io/address-pool", "p")},
			wantIPs: "192.0.2.1,2001:db8::1", wantPool: "p"},
		{name: "spec.loadBalancerIP", opts: []svcOpt{lbIP("192.0.2.9")}, wantIPs: "192.0.2.9"},
		{name: "spec.loadBalancerIP among annotation", opts: []svcOpt{lbIP("2001:db8::1"), ips("192.0.2.1,2001:db8::1")}, wantIPs: "192.0.2.1,2001:db8::1"},
		{name: "pool and key trimmed", opts: []svcOpt{inPool(" p "), shareKey(" k ")}, wantPool: "p", wantKey: "k"},

		{name: "bad ip", opts: []svcOpt{ips("192.0.2.300")}, wantError: true},
		{name: "zone", opts: []svcOpt{ips("fe80::1%eth0")}, wantError: true},
		{name: "two v4", opts: []svcOpt{ips("192.0.2.1,192.0.2.2")}, wantError: true},
		{name: "duplicate", opts: []svcOpt{ips("192.0.2.1,192.0.2.1")}, wantError: true},
		{name: "three", opts: []svcOpt{ips("192.0.2.1,2001:db8::1,192.0.2.2")}, wantError: true},
		{name: "only commas", opts: []svcOpt{ips(",,")}, wantError: true},
		{name: "ironlb vs metallb ips", opts: []svcOpt{ips("192.0.2.1"), ann("metallb.universe.tf/loadBalancerIPs", "192.0.2.2")}, wantError: true},
		{name: "ironlb vs metallb pool", opts: []svcOpt{inPool("a"), ann("metallb.io/address-pool", "b")}, wantError: true},
		{name: "metallb vs metallb key", opts: []svcOpt{ann("metallb.io/allow-shared-ip", "a"), ann("metallb.universe.tf/allow-shared-ip", "b")}, wantError: true},
		{name: "spec ip disagrees", opts: []svcOpt{ips("192.0.2.1"), lbIP("192.0.2.2")}, wantError: true},
		{name: "bad spec ip", opts: []svcOpt{lbIP("nope")}, wantError: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := RequestFor(mkSvc("ns/svc", tt.opts...))
			if tt.wantError {
				if reason(err) != ReasonInvalidRequest {
					t.Fatalf("err = %v (%s), want %s", err, reason(err), ReasonInvalidRequest)
				}
				t.Log(err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := fmtAddrs(req.IPs); got != tt.wantIPs || req.Pool != tt.wantPool || req.SharingKey != tt.wantKey {
				t.Fatalf("got %q %q %q, want %q %q %q", got, req.Pool, req.SharingKey, tt.wantIPs, tt.wantPool, tt.wantKey)
			}
		})
	}
	if _, err := RequestFor(nil); reason(err) != ReasonInvalidRequest {
		t.Fatalf("nil Service: %v", err)
	}
}
