package ingress

import (
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

func reasons(ps []Problem) []string {
	var s []string
	for _, p := range ps {
		s = append(s, p.Namespace+"/"+p.Name+":"+p.Reason)
	}
	return s
}

func TestMergeSharedHost(t *testing.T) {
	mk := func(ns, name string, created time.Time, paths ...Path) Ingress {
		return Ingress{Namespace: ns, Name: name, Created: created, Rules: []Rule{{Host: "shared.com", Paths: paths}}}
	}
	p := func(path, svc string) Path { return Path{Path: path, Type: PathPrefix, Backend: be(svc)} }
	for _, tc := range []struct {
		name     string
		ings     []Ingress
		want     map[string]string // path -> Service
		problems []string
	}{{
		name: "disjoint paths merge",
		ings: []Ingress{mk("ns", "a", t0, p("/a", "sa")), mk("ns", "b", t0, p("/b", "sb"))},
		want: map[string]string{"/a": "sa", "/b/x": "sb"},
	}, {
		name:     "older wins whatever the input order",
		ings:     []Ingress{mk("ns", "young", t0.Add(time.Second), p("/x", "young")), mk("zz", "old", t0, p("/x", "old"))},
		want:     map[string]string{"/x": "old"},
		problems: []string{"ns/young:PathConflict"},
	}, {
		name:     "same age: namespace then name",
		ings:     []Ingress{mk("b", "a", t0, p("/x", "b/a")), mk("a", "z", t0, p("/x", "a/z")), mk("a", "y", t0, p("/x", "a/y"))},
		want:     map[string]string{"/x": "a/y"},
		problems: []string{"a/z:PathConflict", "b/a:PathConflict"},
	}, {
		name:     "trailing slash is the same Prefix",
		ings:     []Ingress{mk("ns", "a", t0, p("/x/", "a")), mk("ns", "b", t0, p("/x", "b"))},
		want:     map[string]string{"/x": "a"},
		problems: []string{"ns/b:PathConflict"},
	}, {
		name: "Exact and Prefix of one path do not conflict",
		ings: []Ingress{mk("ns", "a", t0, Path{Path: "/x", Type: PathExact, Backend: be("exact")}), mk("ns", "b", t0, p("/x", "prefix"))},
		want: map[string]string{"/x": "exact", "/x/y": "prefix"},
	}, {
		name:     "duplicate inside one Ingress: first listed",
		ings:     []Ingress{mk("ns", "a", t0, p("/x", "first"), p("/x", "second"))},
		want:     map[string]string{"/x": "first"},
		problems: []string{"ns/a:PathConflict"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			tab, problems := Build(Input{Ingresses: tc.ings})
			for path, want := range tc.want {
				if got := served(t, tab, "shared.com", path); got != want {
					t.Errorf("%s reached %q, want %q", path, got, want)
				}
			}
			if got := reasons(problems); !slices.Equal(got, tc.problems) {
				t.Errorf("problems = %v, want %v", got, tc.problems)
			}
		})
	}
}

func TestBuildIsDeterministic(t *testing.T) {
	ings := []Ingress{
		{Namespace: "ns", Name: "b", Created: t0, Rules: []Rule{{Host: "h", Paths: []Path{prefix("/x"), prefix("/y")}}},
			Annotations: map[string]string{AnnotationPrefix + "server-snippet": "x", AnnotationPrefix + "affinity": "cookie"}},
		{Namespace: "ns", Name: "a", Created: t0, Rules: []Rule{{Host: "h", Paths: []Path{prefix("/x"), prefix("/y")}}}},
	}
	_, first := Build(Input{Ingresses: ings})
	for range 20 {
		slices.Reverse(ings)
		_, again := Build(Input{Ingresses: ings})
		if !slices.Equal(first, again) {
			t.Fatalf("problems changed with input order:\n%v\n%v", first, again)
		}
	}
}

func TestRefusedAndInvalid(t *testing.T) {
	d := Backend{Resource: "k8s.example.com/StorageBucket/static"}
	tab, problems := Build(Input{Ingresses: []Ingress{{
		Namespace: "ns", Name: "a", Created: t0, DefaultBackend: &d,
		Rules: []Rule{
			{Host: "h", Paths: []Path{
				{Path: "/res", Type: PathPrefix, Backend: Backend{Resource: "k8s.example.com/StorageBucket/b"}},
				{Path: "rel", Type: PathPrefix, Backend: be("s")},
				{Path: "/ok", Type: PathPrefix, Backend: be("ok")},
				{Path: "/noport", Type: PathPrefix, Backend: Backend{Service: "s"}},
			}},
			{Host: "bad..host", Paths: []Path{prefix("/")}},
			{Host: "*", Paths: []Path{prefix("/")}},
		},
	}}})
	want := []string{"ns/a:ResourceBackendRefused", "ns/a:ResourceBackendRefused", "ns/a:InvalidRule",
		"ns/a:InvalidRule", "ns/a:InvalidRule", "ns/a:InvalidRule"}
	if got := reasons(problems); !slices.Equal(got, want) {
		t.Errorf("problems = %v, want %v", got, want)
	}
	if got := served(t, tab, "h", "/ok"); got != "ok" {
		t.Errorf("the valid path of the Ingress reached %q, want it served", got)
	}
	if got := served(t, tab, "h", "/res"); got != "404" {
		t.Errorf("a refused resource backend path reached %q, want the built-in 404", got)
	}
}

// TestRegexMode follows the "Path Priority" example of ingress-nginx's path matching
// documentation: a rewrite-target on one Ingress turns every path of the host into a
// regular expression, tried longest first.
func TestRegexMode(t *testing.T) {
	tab := mustBuild(t,
		Ingress{Namespace: "ns", Name: "test-ingress-1", Created: t0, Rules: []Rule{{Host: "test.com", Paths: []Path{
			{Path: "/foo/bar", Type: PathPrefix, Backend: be("service1")},
			{Path: "/foo/bar/", Type: PathExact, Backend: be("service2")},
		}}}},
		Ingress{Namespace: "ns", Name: "test-ingress-2", Created: t0,
			Annotations: map[string]string{AnnotationPrefix + "rewrite-target": "/$1"},
			Rules: []Rule{{Host: "test.com", Paths: []Path{
				{Path: "/foo/bar/(.+)", Type: PathImplementationSpecific, Backend: be("service3")},
			}}}},
		Ingress{Namespace: "ns", Name: "other", Created: t0, Rules: []Rule{{Host: "other.com", Paths: []Path{prefix("/foo/bar")}}}},
	)
	for _, tc := range []struct{ host, path, want string }{
		{"test.com", "/foo/bar/1", "service3"},
		{"test.com", "/foo/bar/", "service2"},
		{"test.com", "/foo/bar", "service1"},
		{"test.com", "/FOO/BAR", "service1"},    // case-insensitive
		{"test.com", "/foo/barbaz", "service1"}, // regex prefix, not element-wise
		{"other.com", "/foo/barbaz", "404"},     // other hosts keep Kubernetes semantics
		{"other.com", "/foo/bar/x", "/foo/bar"},
	} {
		if got := served(t, tab, tc.host, tc.path); got != tc.want {
			t.Errorf("%s%s reached %q, want %q", tc.host, tc.path, got, tc.want)
		}
	}
	r := tab.Route("test.com", "/foo/bar/x/y")
	if p, _, ok := r.Rewrite("/foo/bar/x/y", ""); !ok || p != "/x/y" {
		t.Errorf("rewrite of /foo/bar/x/y = %q %v, want /x/y", p, ok)
	}
	// Paths without a rewrite-target of their own are sent unchanged.
	if p, _, ok := tab.Route("test.com", "/foo/bar").Rewrite("/foo/bar", ""); ok || p != "/foo/bar" {
		t.Errorf("a route without rewrite-target rewrote to %q", p)
	}

	// The documentation's warning: first match, not longest exact text.
	tab = mustBuild(t, Ingress{Namespace: "ns", Name: "test-ingress-3", Created: t0,
		Annotations: map[string]string{AnnotationPrefix + "use-regex": "true"},
		Rules: []Rule{{Host: "test.com", Paths: []Path{
			{Path: "/foo/bar/bar", Type: PathImplementationSpecific, Backend: be("bar")},
			{Path: "/foo/bar/[A-Z0-9]{3}", Type: PathImplementationSpecific, Backend: be("regex")},
		}}}})
	if got := served(t, tab, "test.com", "/foo/bar/bar"); got != "regex" {
		t.Errorf("/foo/bar/bar reached %q, want the longer expression (nginx first-match order)", got)
	}
}

func TestRewriteTarget(t *testing.T) {
	// The ingress-nginx rewrite example: path /something(/|$)(.*), target /$2.
	tab := mustBuild(t, Ingress{Namespace: "ns", Name: "rewrite", Created: t0,
		Annotations: map[string]string{AnnotationPrefix + "rewrite-target": "/$2", AnnotationPrefix + "use-regex": "true"},
		Rules: []Rule{{Host: "rewrite.bar.com", Paths: []Path{
			{Path: "/something(/|$)(.*)", Type: PathImplementationSpecific, Backend: be("http-svc")},
		}}}})
	for _, tc := range []struct{ in, query, want, wantQuery string }{
		{"/something", "", "/", ""},
		{"/something/", "", "/", ""},
		{"/something/new", "a=1", "/new", "a=1"},
		{"/something/new/x", "", "/new/x", ""},
		{"/SOMETHING/new", "", "/new", ""},
	} {
		r := tab.Route("rewrite.bar.com", tc.in)
		if r == nil {
			t.Fatalf("%s: no route", tc.in)
		}
		p, q, ok := r.Rewrite(tc.in, tc.query)
		if !ok || p != tc.want || q != tc.wantQuery {
			t.Errorf("%s?%s -> %s?%s (%v), want %s?%s", tc.in, tc.query, p, q, ok, tc.want, tc.wantQuery)
		}
	}
	if got := served(t, tab, "rewrite.bar.com", "/somethingelse"); got != "404" {
		t.Errorf("/somethingelse reached %q; ^/something(/|$) does not match it", got)
	}
}

func TestRewriteExpansion(t *testing.T) {
	for _, tc := range []struct{ target, path, query, want, wantQuery string }{
		{"/$1/x", "/a/b", "", "/a/x", ""},
		{"/$9$", "/a/b", "", "/$", ""},                           // absent group is empty, lone $ literal
		{"/v2/$2?from=$1", "/a/b", "q=1", "/v2/b", "from=a&q=1"}, // nginx appends the original args
		{"/fixed", "/a/b", "q=1", "/fixed", "q=1"},
		{"/$1$2", "/a/b", "", "/ab", ""},
		{"/x?", "/a/b", "q=1", "/x", "q=1"},
	} {
		r := &Route{Options: &Options{RewriteTarget: tc.target}}
		r.rewriteRe = mustRegexp(t, `(?i)/(\w+)/(\w+)`)
		p, q, _ := r.Rewrite(tc.path, tc.query)
		if p != tc.want || q != tc.wantQuery {
			t.Errorf("target %s on %s?%s = %s?%s, want %s?%s", tc.target, tc.path, tc.query, p, q, tc.want, tc.wantQuery)
		}
	}
}

func TestInvalidRegexIsReported(t *testing.T) {
	tab, problems := Build(Input{Ingresses: []Ingress{{Namespace: "ns", Name: "a", Created: t0,
		Annotations: map[string]string{AnnotationPrefix + "use-regex": "true"},
		Rules: []Rule{{Host: "h", Paths: []Path{
			{Path: "/(?<=x)y", Type: PathImplementationSpecific, Backend: be("lookbehind")}, // PCRE only
			{Path: "/ok", Type: PathImplementationSpecific, Backend: be("ok")},
		}}}}}})
	if got := reasons(problems); !slices.Equal(got, []string{"ns/a:InvalidRule"}) {
		t.Errorf("problems = %v", got)
	}
	if got := served(t, tab, "h", "/ok"); got != "ok" {
		t.Errorf("the valid path reached %q", got)
	}
}

func TestCanaryMerge(t *testing.T) {
	canary := func(name string, created time.Time, host, path string, ann map[string]string) Ingress {
		a := map[string]string{AnnotationPrefix + "canary": "true"}
		for k, v := range ann {
			a[AnnotationPrefix+k] = v
		}
		return Ingress{Namespace: "ns", Name: name, Created: created, Annotations: a,
			Rules: []Rule{{Host: host, Paths: []Path{{Path: path, Type: PathPrefix, Backend: be(name)}}}}}
	}
	d := be("x")
	cd := canary("with-default", t0.Add(5*time.Second), "app.com", "/", nil)
	cd.DefaultBackend = &d
	tab, problems := Build(Input{Ingresses: []Ingress{
		canary("canary", t0.Add(time.Second), "app.com", "/", map[string]string{"canary-weight": "30", "canary-by-header": "X-Canary"}),
		{Namespace: "ns", Name: "main", Created: t0, Rules: []Rule{{Host: "app.com", Paths: []Path{
			{Path: "/", Type: PathPrefix, Backend: be("main")}}}}},
		canary("second", t0.Add(2*time.Second), "app.com", "/", nil),
		canary("orphan", t0.Add(3*time.Second), "app.com", "/nomain", nil),
		canary("nohost", t0.Add(4*time.Second), "nohost.com", "/", nil),
		cd,
	}})
	want := []string{"ns/second:CanaryIgnored", "ns/orphan:CanaryIgnored", "ns/nohost:CanaryIgnored",
		"ns/with-default:CanaryIgnored", "ns/with-default:CanaryIgnored"}
	if got := reasons(problems); !slices.Equal(got, want) {
		t.Errorf("problems = %v, want %v", got, want)
	}
	r := tab.Route("app.com", "/x")
	if r.Upstream.Service.Name != "main" || r.Canary == nil || r.Canary.Service.Name != "canary" {
		t.Fatalf("route = %+v, want main with canary", r)
	}
	if r.CanaryPolicy.Weight != 30 || r.CanaryPolicy.Header != "X-Canary" {
		t.Errorf("canary policy = %+v", r.CanaryPolicy)
	}
	if got := served(t, tab, "app.com", "/nomain"); got != "main" {
		t.Errorf("a canary without main route must add no route; /nomain reached %q", got)
	}
}

func TestCanaryChoose(t *testing.T) {
	req := func(h, cookie string) *http.Request {
		r, _ := http.NewRequest("GET", "http://x/", nil)
		if h != "" {
			r.Header.Set("X-Canary", h)
		}
		if cookie != "" {
			r.AddCookie(&http.Cookie{Name: "canary", Value: cookie})
		}
		return r
	}
	always := func(int) int { return 0 }      // the lowest roll: canary whenever weight > 0
	never := func(n int) int { return n - 1 } // the highest roll
	for _, tc := range []struct {
		name   string
		policy CanaryPolicy
		r      *http.Request
		roll   func(int) int
		want   bool
	}{
		{"weight 0", CanaryPolicy{WeightTotal: 100}, req("", ""), always, false},
		{"weight total", CanaryPolicy{Weight: 100, WeightTotal: 100}, req("", ""), never, true},
		{"weight roll below", CanaryPolicy{Weight: 30, WeightTotal: 100}, req("", ""), func(int) int { return 29 }, true},
		{"weight roll at", CanaryPolicy{Weight: 30, WeightTotal: 100}, req("", ""), func(int) int { return 30 }, false},
		{"header always beats weight 0", CanaryPolicy{Header: "X-Canary", WeightTotal: 100}, req("always", ""), never, true},
		{"header never beats weight total", CanaryPolicy{Header: "X-Canary", Weight: 100, WeightTotal: 100}, req("never", ""), always, false},
		{"other header value falls through", CanaryPolicy{Header: "X-Canary", Weight: 100, WeightTotal: 100}, req("maybe", ""), always, true},
		{"header value match", CanaryPolicy{Header: "X-Canary", HeaderValue: "v2", WeightTotal: 100}, req("v2", ""), never, true},
		{"header value: always not special", CanaryPolicy{Header: "X-Canary", HeaderValue: "v2", WeightTotal: 100}, req("always", ""), never, false},
		{"cookie always", CanaryPolicy{Cookie: "canary", WeightTotal: 100}, req("", "always"), never, true},
		{"header beats cookie", CanaryPolicy{Header: "X-Canary", Cookie: "canary", WeightTotal: 100}, req("never", "always"), always, false},
	} {
		if got := tc.policy.Choose(tc.r, tc.roll); got != tc.want {
			t.Errorf("%s: Choose = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestProblemsName(t *testing.T) {
	_, problems := Build(Input{Ingresses: []Ingress{{Namespace: "ns", Name: "a", Created: t0,
		Annotations: map[string]string{AnnotationPrefix + "configuration-snippet": "more_set_headers x;", "other.io/x": "y"},
		Rules:       []Rule{{Host: "h", Paths: []Path{prefix("/")}}}}}})
	if len(problems) != 1 || problems[0].Reason != ReasonAnnotationIgnored ||
		!strings.Contains(problems[0].Message, "configuration-snippet") {
		t.Errorf("problems = %v, want one AnnotationIgnored naming configuration-snippet", problems)
	}
}

func mustRegexp(t *testing.T, s string) *regexp.Regexp {
	t.Helper()
	re, err := regexp.Compile(s)
	if err != nil {
		t.Fatal(err)
	}
	return re
}
