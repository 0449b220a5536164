package ingress

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func be(service string) Backend {
	return Backend{Service: service, Port: ServicePort{Number: 80}}
}

func prefix(p string) Path { return Path{Path: p, Type: PathPrefix, Backend: be(p)} }
func exact(p string) Path  { return Path{Path: p, Type: PathExact, Backend: be("exact:" + p)} }

// served returns the Service a request reaches, "default" for the defaultBackend and
// "404" for the built-in 404.
func served(t *testing.T, tab *Table, host, path string) string {
	t.Helper()
	r := tab.Route(host, path)
	if r == nil {
		return "404"
	}
	return r.Upstream.Service.Name
}

func mustBuild(t *testing.T, ings ...Ingress) *Table {
	t.Helper()
	tab, problems := Build(Input{Ingresses: ings})
	if len(problems) != 0 {
		t.Fatalf("unexpected problems: %v", problems)
	}
	return tab
}

// TestPathMatchingDocExamples is every row of the "Examples" table of the Kubernetes
// Ingress documentation (concepts/services-networking/ingress, path matching), each
// path on one Ingress with a defaultBackend, so "no match" means the default backend.
func TestPathMatchingDocExamples(t *testing.T) {
	for _, tc := range []struct {
		kind  string
		paths []Path
		req   []string
		want  string // Service reached
	}{
		{"Prefix", []Path{prefix("/")}, []string{"/", "/foo", "/foo/bar/baz", "/aaa/"}, "/"},
		{"Exact", []Path{exact("/foo")}, []string{"/foo"}, "exact:/foo"},
		{"Exact", []Path{exact("/foo")}, []string{"/bar"}, "default"},
		{"Exact", []Path{exact("/foo")}, []string{"/foo/"}, "default"},
		{"Exact", []Path{exact("/foo/")}, []string{"/foo"}, "default"},
		{"Prefix", []Path{prefix("/foo")}, []string{"/foo", "/foo/"}, "/foo"},
		{"Prefix", []Path{prefix("/foo/")}, []string{"/foo", "/foo/"}, "/foo/"},
		{"Prefix", []Path{prefix("/aaa/bb")}, []string{"/aaa/bbb"}, "default"},
		{"Prefix", []Path{prefix("/aaa/bbb")}, []string{"/aaa/bbb"}, "/aaa/bbb"},
		{"Prefix", []Path{prefix("/aaa/bbb/")}, []string{"/aaa/bbb"}, "/aaa/bbb/"},   // ignores trailing slash
		{"Prefix", []Path{prefix("/aaa/bbb")}, []string{"/aaa/bbb/"}, "/aaa/bbb"},    // matches trailing slash
		{"Prefix", []Path{prefix("/aaa/bbb")}, []string{"/aaa/bbb/ccc"}, "/aaa/bbb"}, // matches subpath
		{"Prefix", []Path{prefix("/aaa/bbb")}, []string{"/aaa/bbbxyz"}, "default"},   // not a string prefix
		{"Prefix", []Path{prefix("/"), prefix("/aaa")}, []string{"/aaa/ccc"}, "/aaa"},
		{"Prefix", []Path{prefix("/"), prefix("/aaa"), prefix("/aaa/bbb")}, []string{"/aaa/bbb"}, "/aaa/bbb"},
		{"Prefix", []Path{prefix("/"), prefix("/aaa"), prefix("/aaa/bbb")}, []string{"/ccc"}, "/"},
		{"Prefix", []Path{prefix("/aaa")}, []string{"/ccc"}, "default"}, // uses default backend
		{"Mixed", []Path{prefix("/foo"), exact("/foo")}, []string{"/foo"}, "exact:/foo"},
		{"Mixed", []Path{exact("/foo"), prefix("/foo")}, []string{"/foo"}, "exact:/foo"},
	} {
		for _, req := range tc.req {
			name := fmt.Sprintf("%s %v %s", tc.kind, pathsText(tc.paths), req)
			t.Run(name, func(t *testing.T) {
				d := be("default")
				tab := mustBuild(t, Ingress{Namespace: "ns", Name: "a", Created: t0, DefaultBackend: &d,
					Rules: []Rule{{Host: "foo.com", Paths: tc.paths}}})
				if got := served(t, tab, "foo.com", req); got != tc.want {
					t.Errorf("request %s reached %q, want %q", req, got, tc.want)
				}
			})
		}
	}
}

func pathsText(ps []Path) []string {
	var s []string
	for _, p := range ps {
		s = append(s, string(p.Type[0])+p.Path)
	}
	return s
}

func TestPathPrecedence(t *testing.T) {
	tab := mustBuild(t, Ingress{Namespace: "ns", Name: "a", Created: t0, Rules: []Rule{{Host: "h", Paths: []Path{
		prefix("/"), prefix("/a"), prefix("/a/b/c"), exact("/a/b"), exact("/a/b/"),
		{Path: "/impl", Type: PathImplementationSpecific, Backend: be("impl")},
	}}}})
	for _, tc := range []struct{ path, want string }{
		{"/a/b", "exact:/a/b"},   // Exact as long as the request beats the shorter Prefix /a
		{"/a/b/", "exact:/a/b/"}, // Exact /a/b/ (5) over Prefix /a (2)
		{"/a/b/x", "/a"},         // no Exact; /a/b/c does not match
		{"/a/b/c/d", "/a/b/c"},   // longest Prefix
		{"/a/bc", "/a"},
		{"/ab", "/"},
		{"/impl/x", "impl"}, // ImplementationSpecific is Prefix
		{"/implx", "/"},
		{"/", "/"},
		{"//", "/"},
	} {
		if got := served(t, tab, "h", tc.path); got != tc.want {
			t.Errorf("%s reached %q, want %q", tc.path, got, tc.want)
		}
	}
}

func TestHostMatching(t *testing.T) {
	tab := mustBuild(t,
		Ingress{Namespace: "ns", Name: "wild", Created: t0, Rules: []Rule{{Host: "*.foo.com", Paths: []Path{{Path: "/", Type: PathPrefix, Backend: be("wild")}}}}},
		Ingress{Namespace: "ns", Name: "exact", Created: t0, Rules: []Rule{
			{Host: "Exact.Foo.com", Paths: []Path{{Path: "/only", Type: PathPrefix, Backend: be("exact")}}},
			{Host: "foo.com", Paths: []Path{{Path: "/", Type: PathPrefix, Backend: be("apex")}}},
		}},
		Ingress{Namespace: "ns", Name: "any", Created: t0, Rules: []Rule{{Paths: []Path{{Path: "/", Type: PathPrefix, Backend: be("any")}}}}},
	)
	for _, tc := range []struct{ host, path, want string }{
		{"bar.foo.com", "/", "wild"},
		{"BAR.FOO.COM:8080", "/", "wild"},
		{"bar.foo.com.", "/", "wild"},
		{"baz.bar.foo.com", "/", "any"}, // wildcard matches one label only
		{"foo.com", "/", "apex"},        // not the wildcard
		{"exact.foo.com", "/only/x", "exact"},
		{"exact.foo.com", "/other", "404"}, // exact host chosen; no fall-through to the wildcard or hostless rules
		{"other.org", "/", "any"},
		{"", "/", "any"},
		{"[2001:db8::1]:80", "/", "any"},
	} {
		if got := served(t, tab, tc.host, tc.path); got != tc.want {
			t.Errorf("%s%s reached %q, want %q", tc.host, tc.path, got, tc.want)
		}
	}
}

func TestDefaultBackends(t *testing.T) {
	dOld, dNew := be("default-old"), be("default-new")
	tab, problems := Build(Input{Ingresses: []Ingress{
		{Namespace: "ns", Name: "new", Created: t0.Add(time.Hour), DefaultBackend: &dNew,
			Rules: []Rule{{Host: "new.com", Paths: []Path{prefix("/app")}}}},
		{Namespace: "ns", Name: "old", Created: t0, DefaultBackend: &dOld,
			Rules: []Rule{{Host: "old.com", Paths: []Path{prefix("/app")}}}},
		{Namespace: "ns", Name: "plain", Created: t0, Rules: []Rule{{Host: "plain.com", Paths: []Path{prefix("/app")}}}},
	}})
	if len(problems) != 0 {
		t.Fatalf("problems: %v", problems)
	}
	for _, tc := range []struct{ host, path, want string }{
		{"new.com", "/app", "/app"},
		{"new.com", "/x", "default-new"},   // host default: its own Ingress's defaultBackend
		{"old.com", "/x", "default-old"},   // host default
		{"plain.com", "/x", "default-old"}, // catch-all: oldest defaultBackend
		{"unknown.com", "/", "default-old"},
	} {
		if got := served(t, tab, tc.host, tc.path); got != tc.want {
			t.Errorf("%s%s reached %q, want %q", tc.host, tc.path, got, tc.want)
		}
	}
	if r := tab.Route("unknown.com", "/"); r.Path != "" || r.Ingress != "ns/old" {
		t.Errorf("catch-all route = %+v, want the defaultBackend of ns/old", r)
	}

	// Without any defaultBackend, nothing matches: the proxy's built-in 404.
	tab = mustBuild(t, Ingress{Namespace: "ns", Name: "a", Created: t0, Rules: []Rule{{Host: "a.com", Paths: []Path{prefix("/app")}}}})
	if got := served(t, tab, "a.com", "/"); got != "404" {
		t.Errorf("unmatched path reached %q, want the built-in 404", got)
	}
}

func TestEndpointsAndUpstreams(t *testing.T) {
	ep := netip.MustParseAddrPort("198.18.1.1:8080")
	k := ServiceKey{Namespace: "ns", Name: "s1", Port: ServicePort{Number: 80}}
	tab, _ := Build(Input{
		Ingresses: []Ingress{
			{Namespace: "ns", Name: "a", Created: t0, Rules: []Rule{{Host: "a.com", Paths: []Path{
				{Path: "/x", Type: PathPrefix, Backend: be("s1")}, {Path: "/y", Type: PathPrefix, Backend: be("s1")},
				{Path: "/z", Type: PathPrefix, Backend: be("s2")}}}}},
		},
		Endpoints: map[ServiceKey][]netip.AddrPort{k: {ep}},
	})
	x, y, z := tab.Route("a.com", "/x"), tab.Route("a.com", "/y"), tab.Route("a.com", "/z")
	if x.Upstream != y.Upstream {
		t.Error("two paths to one Service port should share one Upstream")
	}
	if len(x.Upstream.Endpoints) != 1 || x.Upstream.Endpoints[0] != ep {
		t.Errorf("endpoints = %v, want [%v]", x.Upstream.Endpoints, ep)
	}
	if len(z.Upstream.Endpoints) != 0 {
		t.Errorf("a Service without endpoints has %v", z.Upstream.Endpoints)
	}
	if n := len(tab.Upstreams()); n != 2 {
		t.Errorf("%d upstreams, want 2", n)
	}
	if tab.Len() != 3 {
		t.Errorf("Len = %d, want 3", tab.Len())
	}
}
