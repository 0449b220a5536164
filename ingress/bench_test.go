package ingress

import (
	"fmt"
	"testing"
)

// benchTable: hosts×paths Ingress routes (one Ingress per host), half of the hosts
// also reachable through a wildcard.
func benchTable(b *testing.B, hosts, paths int) *Table {
	b.Helper()
	var ings []Ingress
	for h := range hosts {
		ing := Ingress{Namespace: "ns", Name: fmt.Sprintf("ing%d", h), Created: t0}
		var ps []Path
		for p := range paths {
			ps = append(ps, Path{Path: fmt.Sprintf("/api/v%d/items", p), Type: PathPrefix, Backend: be(fmt.Sprintf("s%d", p))})
		}
		ps = append(ps, Path{Path: "/", Type: PathPrefix, Backend: be("root")}, Path{Path: "/healthz", Type: PathExact, Backend: be("hz")})
		ing.Rules = []Rule{{Host: fmt.Sprintf("host%d.example.com", h), Paths: ps}}
		if h%2 == 0 {
			ing.Rules = append(ing.Rules, Rule{Host: fmt.Sprintf("*.w%d.example.com", h), Paths: ps})
		}
		ings = append(ings, ing)
	}
	tab, problems := Build(Input{Ingresses: ings})
	if len(problems) != 0 {
		b.Fatal(problems)
	}
	return tab
}

// BenchmarkRoute: the per-request lookup on a table of 1000 hosts with 12 paths each.
func BenchmarkRoute(b *testing.B) {
	tab := benchTable(b, 1000, 10)
	reqs := []struct{ host, path string }{
		{"host500.example.com", "/api/v7/items/12345/details"},
		{"Host999.Example.com:443", "/healthz"},
		{"x.w500.example.com", "/api/v3/items"},
		{"host1.example.com", "/static/app.js"},
		{"unknown.example.org", "/"},
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		rq := reqs[i%len(reqs)]
		_ = tab.Route(rq.host, rq.path)
	}
}

// BenchmarkRouteRegexHost: a regex-mode host (use-regex) with 12 expressions.
func BenchmarkRouteRegexHost(b *testing.B) {
	var ps []Path
	for p := range 10 {
		ps = append(ps, Path{Path: fmt.Sprintf("/api/v%d/items/[0-9]+", p), Type: PathImplementationSpecific, Backend: be("s")})
	}
	ps = append(ps, Path{Path: "/", Type: PathPrefix, Backend: be("root")})
	tab, _ := Build(Input{Ingresses: []Ingress{{Namespace: "ns", Name: "re", Created: t0,
		Annotations: map[string]string{AnnotationPrefix + "use-regex": "true"},
		Rules:       []Rule{{Host: "re.example.com", Paths: ps}}}}})
	b.ReportAllocs()
	for b.Loop() {
		_ = tab.Route("re.example.com", "/api/v0/items/123")
	}
}

// BenchmarkBuild: rebuilding the whole 1000-host table (what one reconfiguration costs).
func BenchmarkBuild(b *testing.B) {
	var ings []Ingress
	for h := range 1000 {
		var ps []Path
		for p := range 10 {
			ps = append(ps, Path{Path: fmt.Sprintf("/api/v%d", p), Type: PathPrefix, Backend: be(fmt.Sprintf("s%d", p))})
		}
		ings = append(ings, Ingress{Namespace: "ns", Name: fmt.Sprintf("ing%d", h), Created: t0,
			Rules: []Rule{{Host: fmt.Sprintf("host%d.example.com", h), Paths: ps}}})
	}
	b.ReportAllocs()
	for b.Loop() {
		Build(Input{Ingresses: ings})
	}
}
