package ingress

import (
	"errors"
	"net/netip"
	"reflect"
	"slices"
	"testing"
	"time"
)

func TestParseAnnotations(t *testing.T) {
	a := func(kv ...string) map[string]string {
		m := map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			m[AnnotationPrefix+kv[i]] = kv[i+1]
		}
		return m
	}
	def := DefaultOptions()
	with := func(f func(o *Options)) Options { o := DefaultOptions(); f(&o); return o }
	for _, tc := range []struct {
		name    string
		in      map[string]string
		want    Options
		errKeys []string // keys reported, without prefix
	}{
		{"none", nil, def, nil},
		{"foreign prefixes are not ours", map[string]string{"kubernetes.io/ingress.class": "x", "nginx.org/foo": "y"}, def, nil},
		{"ssl-redirect false", a("ssl-redirect", "false"), with(func(o *Options) { o.SSLRedirect = false }), nil},
		{"force-ssl-redirect", a("force-ssl-redirect", "true"), with(func(o *Options) { o.ForceSSLRedirect = true }), nil},
		{"bad bool keeps default", a("ssl-redirect", "nope"), def, []string{"ssl-redirect"}},
		{"use-regex", a("use-regex", "TRUE"), with(func(o *Options) { o.UseRegex = true }), nil},
		{"rewrite-target", a("rewrite-target", "/$2"), with(func(o *Options) { o.RewriteTarget = "/$2" }), nil},
		{"rewrite-target must be a path", a("rewrite-target", "http://x/"), def, []string{"rewrite-target"}},
		{"backend-protocol", a("backend-protocol", "grpcs"), with(func(o *Options) { o.BackendProtocol = ProtocolGRPCS }), nil},
		{"backend-protocol HTTPS", a("backend-protocol", "HTTPS"), with(func(o *Options) { o.BackendProtocol = ProtocolHTTPS }), nil},
		{"backend-protocol FCGI unsupported", a("backend-protocol", "FCGI"), def, []string{"backend-protocol"}},
		{"proxy-body-size 8m", a("proxy-body-size", "8m"), with(func(o *Options) { o.MaxBodyBytes = 8 << 20 }), nil},
		{"proxy-body-size 0 unlimited", a("proxy-body-size", "0"), with(func(o *Options) { o.MaxBodyBytes = 0 }), nil},
		{"proxy-body-size bad", a("proxy-body-size", "8mb"), def, []string{"proxy-body-size"}},
		{"proxy-read-timeout", a("proxy-read-timeout", "120"), with(func(o *Options) { o.ReadTimeout = 120 * time.Second }), nil},
		{"proxy-read-timeout 0 refused", a("proxy-read-timeout", "0"), def, []string{"proxy-read-timeout"}},
		{"proxy-read-timeout unit refused", a("proxy-read-timeout", "10s"), def, []string{"proxy-read-timeout"}},
		{"whitelist", a("whitelist-source-range", "10.0.0.0/8, 192.0.2.7 ,2001:db8::/32,198.51.100.9/24"),
			with(func(o *Options) {
				o.AllowSourceRange = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.7/32"),
					netip.MustParsePrefix("2001:db8::/32"), netip.MustParsePrefix("198.51.100.0/24")}
			}), nil},
		{"whitelist broken fails closed", a("whitelist-source-range", "10.0.0.0/8,nonsense"),
			with(func(o *Options) { o.Denied = true }), []string{"whitelist-source-range"}},
		{"allowlist wins over whitelist", a("whitelist-source-range", "10.0.0.0/8", "allowlist-source-range", "192.0.2.0/24"),
			with(func(o *Options) { o.AllowSourceRange = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")} }), nil},
		{"canary", a("canary", "true", "canary-weight", "25", "canary-by-header", "X-Canary", "canary-by-header-value", "yes", "canary-by-cookie", "c"),
			with(func(o *Options) {
				o.Canary = CanaryPolicy{Enabled: true, Weight: 25, WeightTotal: 100, Header: "X-Canary", HeaderValue: "yes", Cookie: "c"}
			}), nil},
		{"canary weight total", a("canary-weight", "3", "canary-weight-total", "1000"),
			with(func(o *Options) { o.Canary.Weight, o.Canary.WeightTotal = 3, 1000 }), nil},
		{"canary weight above total is clamped", a("canary-weight", "150"),
			with(func(o *Options) { o.Canary.Weight = 100 }), []string{"canary-weight"}},
		{"canary weight negative", a("canary-weight", "-1"), def, []string{"canary-weight"}},
		{"unknown annotations reported, sorted", a("server-snippet", "x", "affinity", "cookie", "ssl-redirect", "false"),
			with(func(o *Options) { o.SSLRedirect = false }), []string{"affinity", "server-snippet"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, errs := ParseAnnotations(tc.in)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("options = %+v\nwant      %+v", got, tc.want)
			}
			var keys []string
			for _, e := range errs {
				keys = append(keys, e.Key[len(AnnotationPrefix):])
			}
			if !slices.Equal(keys, tc.errKeys) {
				t.Errorf("reported %v, want %v", keys, tc.errKeys)
			}
		})
	}
}

func TestIgnoredAnnotationError(t *testing.T) {
	_, errs := ParseAnnotations(map[string]string{AnnotationPrefix + "auth-url": "http://x", AnnotationPrefix + "proxy-body-size": "x"})
	if len(errs) != 2 || !errors.Is(errs[0], ErrIgnoredAnnotation) || errors.Is(errs[1], ErrIgnoredAnnotation) {
		t.Fatalf("errs = %v: want auth-url ignored and proxy-body-size invalid", errs)
	}
}

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true}, {"1024", 1024, true}, {"1k", 1024, true}, {"1K", 1024, true},
		{"8m", 8 << 20, true}, {"2G", 2 << 30, true}, {" 5m ", 5 << 20, true},
		{"", 0, false}, {"m", 0, false}, {"-1", 0, false}, {"1.5m", 0, false}, {"1t", 0, false},
		{"9223372036854775807", 1<<63 - 1, true}, {"9223372036854775807k", 0, false}, {"99999999999999999999", 0, false},
	} {
		got, err := ParseSize(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}
