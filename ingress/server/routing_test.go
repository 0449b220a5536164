package server

import (
	"bytes"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/ironlb/ironlb/ingress"
)

// TestFanOutVhostsDefault: the shapes of the Kubernetes Ingress documentation through
// real sockets: fan-out, name-based virtual hosts, the default backend, and the
// built-in 404 when there is none.
func TestFanOutVhostsDefault(t *testing.T) {
	l := newLab(t, Options{})
	s1, s2, def := startBackend(t, "s1", nil), startBackend(t, "s2", nil), startBackend(t, "default", nil)
	d := svc("default")
	fanout := ingress.Ingress{Namespace: "web", Name: "fanout", Created: created, DefaultBackend: &d,
		Rules: []ingress.Rule{
			{Host: "foo.bar.com", Paths: []ingress.Path{prefixPath("/foo", "s1"), prefixPath("/bar", "s2")}},
		}}
	vhosts := ingress.Ingress{Namespace: "web", Name: "vhosts", Created: created.Add(1),
		Rules: []ingress.Rule{
			{Host: "bar.foo.com", Paths: []ingress.Path{prefixPath("/", "s2")}},
			{Host: "*.wild.com", Paths: []ingress.Path{prefixPath("/", "s1")}},
		}}
	l.update(ingress.Input{Ingresses: []ingress.Ingress{fanout, vhosts},
		Endpoints: endpoints(map[string][]*backend{"s1": {s1}, "s2": {s2}, "default": {def}})})
	c := l.client(clientOpts{})
	for _, tc := range []struct{ url, want string }{
		{"http://foo.bar.com/foo", "s1"},
		{"http://foo.bar.com/foo/x/y?q=1", "s1"},
		{"http://foo.bar.com/bar", "s2"},
		{"http://foo.bar.com/foobar", "default"},
		{"http://foo.bar.com/", "default"},
		{"http://bar.foo.com/anything", "s2"},
		{"http://x.wild.com/", "s1"},
		{"http://y.x.wild.com/", "default"},
		{"http://unknown.example/", "default"},
	} {
		code, got := l.get(c, tc.url)
		if code != http.StatusOK || got != tc.want {
			t.Errorf("GET %s: %d from %q, want 200 from %q", tc.url, code, got, tc.want)
		}
	}
	// The request reaches the backend as sent: host, path and query.
	_, e := l.do(c, "GET", "http://foo.bar.com/foo/a%2Fb?x=1&y=2", nil, nil)
	if e.URI != "/foo/a%2Fb?x=1&y=2" || e.Host != "foo.bar.com" {
		t.Errorf("backend saw %s on host %s", e.URI, e.Host)
	}
	// A dot-dot path is routed as nginx routes it, by its normalised form.
	if _, got := l.get(c, "http://foo.bar.com/bar/../foo/x"); got != "s1" {
		t.Errorf("/bar/../foo/x reached %q, want s1 (routing on the cleaned path)", got)
	}

	// Without a defaultBackend, unmatched requests get the built-in 404.
	l.update(ingress.Input{Ingresses: []ingress.Ingress{vhosts},
		Endpoints: endpoints(map[string][]*backend{"s1": {s1}, "s2": {s2}})})
	res, e := l.do(c, "GET", "http://unknown.example/", nil, nil)
	if res.StatusCode != http.StatusNotFound || e.Backend != "" {
		t.Errorf("unmatched host: %d from %q, want the built-in 404", res.StatusCode, e.Backend)
	}
	if n := l.counter("ironlb_ingress_requests_total", map[string]string{"ingress": "", "code": "404"}); n != 1 {
		t.Errorf("requests_total{code=404} = %v, want 1", n)
	}
	if n := l.counter("ironlb_ingress_requests_total", map[string]string{"ingress": "web/fanout", "service": "web/s1", "code": "200"}); n < 3 {
		t.Errorf("requests_total{ingress=web/fanout,service=web/s1,code=200} = %v, want >= 3", n)
	}
	if n := l.counter("ironlb_ingress_request_duration_seconds", map[string]string{"ingress": "web/fanout", "service": "web/s1"}); n < 3 {
		t.Errorf("request_duration_seconds{ingress=web/fanout,service=web/s1} observed %v requests, want >= 3", n)
	}
	if n := l.counter("ironlb_ingress_reloads_total", nil); n != 2 {
		t.Errorf("reloads_total = %v, want 2", n)
	}

	// A Service without ready endpoints answers 503.
	l.update(ingress.Input{Ingresses: []ingress.Ingress{vhosts}})
	if code, _ := l.get(c, "http://bar.foo.com/"); code != http.StatusServiceUnavailable {
		t.Errorf("no endpoints: %d, want 503", code)
	}
}

func TestForwardedHeaders(t *testing.T) {
	trustedNet := netip.MustParsePrefix("198.18.2.128/25")
	l := newLab(t, Options{TrustedProxies: []netip.Prefix{trustedNet}})
	b := startBackend(t, "b", nil)
	l.update(ingress.Input{Ingresses: []ingress.Ingress{simpleIngress("i", "app.example", "b", nil)},
		Endpoints: endpoints(map[string][]*backend{"b": {b}})})
	spoof := map[string]string{"X-Forwarded-For": "203.0.113.66", "X-Forwarded-Proto": "https",
		"X-Forwarded-Host": "evil.example", "X-Real-Ip": "203.0.113.66", "X-Forwarded-Port": "1"}

	untrusted := netip.MustParseAddr("198.18.2.10")
	_, e := l.do(l.client(clientOpts{source: untrusted}), "GET", "http://app.example/", nil, spoof)
	for h, want := range map[string]string{"X-Forwarded-For": "198.18.2.10", "X-Real-Ip": "198.18.2.10",
		"X-Forwarded-Proto": "http", "X-Forwarded-Host": "app.example", "X-Forwarded-Port": "80"} {
		if got := strings.Join(e.Header.Values(h), ","); got != want {
			t.Errorf("untrusted client: backend saw %s %q, want %q", h, got, want)
		}
	}

	proxy := netip.MustParseAddr("198.18.2.200")
	// The client put a forged hop first; the trusted proxy appended the real client.
	chain := map[string]string{"X-Forwarded-For": "203.0.113.66, 198.51.100.7", "X-Forwarded-Proto": "https",
		"X-Forwarded-Host": "app.example"}
	_, e = l.do(l.client(clientOpts{source: proxy}), "GET", "http://app.example/", nil, chain)
	for h, want := range map[string]string{"X-Forwarded-For": "203.0.113.66, 198.51.100.7, 198.18.2.200",
		"X-Real-Ip": "198.51.100.7", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "app.example"} {
		if got := strings.Join(e.Header.Values(h), ","); got != want {
			t.Errorf("trusted proxy: backend saw %s %q, want %q", h, got, want)
		}
	}
}

func TestLargeHeaders(t *testing.T) {
	l := newLab(t, Options{})
	big := strings.Repeat("x", 32<<10)
	b := startBackend(t, "b", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.Header.Get("Cookie")) != len("session=")+len(big) || len(r.Header.Get("X-Token-1")) != 8<<10 {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		w.Header().Set("X-Big-Response", big)
		w.WriteHeader(http.StatusOK)
	}))
	l.update(ingress.Input{Ingresses: []ingress.Ingress{simpleIngress("i", "app.example", "b", nil)},
		Endpoints: endpoints(map[string][]*backend{"b": {b}})})
	hdr := map[string]string{"Cookie": "session=" + big}
	for i := range 4 {
		hdr["X-Token-"+string(rune('1'+i))] = strings.Repeat("t", 8<<10)
	}
	for _, scheme := range []string{"http", "https"} {
		res, _ := l.do(l.client(clientOpts{}), "GET", scheme+"://app.example/", nil, hdr)
		if res.StatusCode != http.StatusOK || len(res.Header.Get("X-Big-Response")) != len(big) {
			t.Errorf("%s with 64 KiB of request headers: %d, response header %d bytes; want 200 and %d",
				scheme, res.StatusCode, len(res.Header.Get("X-Big-Response")), len(big))
		}
	}
}

func TestBodySizeAndWhitelist(t *testing.T) {
	l := newLab(t, Options{})
	b, guarded := startBackend(t, "b", nil), startBackend(t, "guarded", nil)
	l.update(ingress.Input{Ingresses: []ingress.Ingress{
		simpleIngress("small", "small.example", "b", map[string]string{ingress.AnnotationPrefix + "proxy-body-size": "1k"}),
		simpleIngress("allow", "allow.example", "guarded", map[string]string{ingress.AnnotationPrefix + "whitelist-source-range": "198.18.2.50/32, 2001:db8::/32"}),
	}, Endpoints: endpoints(map[string][]*backend{"b": {b}, "guarded": {guarded}})})
	c := l.client(clientOpts{})
	for _, tc := range []struct {
		name string
		body io.Reader
		want int
	}{
		{"Content-Length over", bytes.NewReader(make([]byte, 1025)), http.StatusRequestEntityTooLarge},
		{"Content-Length at the limit", bytes.NewReader(make([]byte, 1024)), http.StatusOK},
		{"chunked over", io.MultiReader(strings.NewReader(strings.Repeat("a", 2000))), http.StatusRequestEntityTooLarge},
		{"chunked under", io.MultiReader(strings.NewReader(strings.Repeat("a", 1000))), http.StatusOK},
	} {
		res, e := l.do(c, "POST", "http://small.example/upload", tc.body, nil)
		if res.StatusCode != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, res.StatusCode, tc.want)
		}
		if tc.want == http.StatusOK && e.Body == 0 {
			t.Errorf("%s: backend got no body", tc.name)
		}
	}
	if code, _ := l.get(l.client(clientOpts{source: netip.MustParseAddr("198.18.2.51")}), "http://allow.example/"); code != http.StatusForbidden {
		t.Errorf("client outside whitelist-source-range: %d, want 403", code)
	}
	if guarded.hits.Load() != 0 {
		t.Error("a refused request reached the backend")
	}
	if code, got := l.get(l.client(clientOpts{source: netip.MustParseAddr("198.18.2.50")}), "http://allow.example/"); code != http.StatusOK || got != "guarded" {
		t.Errorf("client inside whitelist-source-range: %d from %q, want 200", code, got)
	}
}

func TestRewriteTargetThroughProxy(t *testing.T) {
	l := newLab(t, Options{})
	b := startBackend(t, "b", nil)
	ing := ingress.Ingress{Namespace: "web", Name: "rewrite", Created: created,
		Annotations: map[string]string{ingress.AnnotationPrefix + "rewrite-target": "/$2", ingress.AnnotationPrefix + "use-regex": "true"},
		Rules: []ingress.Rule{{Host: "rewrite.bar.com", Paths: []ingress.Path{
			{Path: "/something(/|$)(.*)", Type: ingress.PathImplementationSpecific, Backend: svc("b")}}}}}
	l.update(ingress.Input{Ingresses: []ingress.Ingress{ing}, Endpoints: endpoints(map[string][]*backend{"b": {b}})})
	c := l.client(clientOpts{})
	for in, want := range map[string]string{
		"/something":         "/",
		"/something/":        "/",
		"/something/new?a=b": "/new?a=b",
		"/Something/x/y":     "/x/y",
	} {
		if _, e := l.do(c, "GET", "http://rewrite.bar.com"+in, nil, nil); e.URI != want {
			t.Errorf("%s reached the backend as %q, want %q", in, e.URI, want)
		}
	}
}
