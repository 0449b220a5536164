package ingress

import (
	"strings"
	"testing"
)

// FuzzParseAnnotations: any annotation value parses without panicking, and the result
// keeps its invariants.
func FuzzParseAnnotations(f *testing.F) {
	for _, s := range [][2]string{
		{"proxy-body-size", "8m"}, {"whitelist-source-range", "10.0.0.0/8, 2001:db8::1"},
		{"canary-weight", "30"}, {"proxy-read-timeout", "60"}, {"rewrite-target", "/$1"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, key, value string) {
		o, errs := ParseAnnotations(map[string]string{AnnotationPrefix + key: value, AnnotationPrefix + "canary-weight": value})
		if o.Canary.WeightTotal < 1 || o.Canary.Weight < 0 || o.Canary.Weight > o.Canary.WeightTotal {
			t.Errorf("canary weight %d/%d out of range", o.Canary.Weight, o.Canary.WeightTotal)
		}
		if o.MaxBodyBytes < -1 || o.ReadTimeout < 0 {
			t.Errorf("negative limit: %+v", o)
		}
		if o.Denied && len(o.AllowSourceRange) != 0 {
			t.Errorf("denied with a range: %+v", o)
		}
		for _, p := range o.AllowSourceRange {
			if !p.IsValid() || p != p.Masked() {
				t.Errorf("source range %v not a masked prefix", p)
			}
		}
		if o.RewriteTarget != "" && !strings.HasPrefix(o.RewriteTarget, "/") {
			t.Errorf("rewrite target %q", o.RewriteTarget)
		}
		for _, e := range errs {
			if e.Error() == "" {
				t.Error("empty error text")
			}
		}
	})
}

// FuzzRoute compares the map-based path lookup with the definition of the Kubernetes
// documentation, written naively: split on "/", element-wise prefix, longest path,
// Exact before Prefix.
func FuzzRoute(f *testing.F) {
	for _, s := range [][2]string{
		{"/foo /foo/ /aaa/bbb", "/aaa/bbb/"}, {"/ /aaa /aaa/bbb", "/aaa/bbbxyz"}, {"/foo", "/foo//bar"},
		{"=/foo /foo", "/foo"}, {"=/a/ /a", "/a/"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, spec, req string) {
		if !strings.HasPrefix(req, "/") {
			return
		}
		var paths []Path
		seen := map[string]bool{}
		for i, p := range strings.Fields(spec) {
			typ := PathPrefix
			if strings.HasPrefix(p, "=") {
				typ, p = PathExact, p[1:]
			}
			if !strings.HasPrefix(p, "/") {
				continue
			}
			k := string(typ) + p
			if typ == PathPrefix {
				k = string(typ) + strings.TrimRight(p, "/")
			}
			if seen[k] || i > 20 {
				continue
			}
			seen[k] = true
			paths = append(paths, Path{Path: p, Type: typ, Backend: be(string(typ[0]) + p)})
		}
		tab, problems := Build(Input{Ingresses: []Ingress{{Namespace: "ns", Name: "f", Created: t0,
			Rules: []Rule{{Host: "h", Paths: paths}}}}})
		if len(problems) != 0 {
			t.Fatalf("problems: %v", problems)
		}
		got := "404"
		if r := tab.Route("h", req); r != nil {
			got = r.Upstream.Service.Name
		}
		if want := naiveMatch(paths, req); got != want {
			t.Errorf("paths %v request %q: got %s, want %s", pathsText(paths), req, got, want)
		}
	})
}

func elements(p string) []string {
	var out []string
	for _, e := range strings.Split(p, "/") {
		out = append(out, e)
	}
	// A trailing slash adds an empty last element that matching ignores.
	for len(out) > 1 && out[len(out)-1] == "" {
		out = out[:len(out)-1]
	}
	return out
}

func naiveMatch(paths []Path, req string) string {
	best, bestLen, bestExact := "404", -1, false
	for _, p := range paths {
		var ok bool
		var n int
		if p.Type == PathExact {
			ok, n = p.Path == req, len(p.Path)
		} else {
			pe, re := elements(p.Path), elements(req)
			ok = len(pe) <= len(re)
			for i := 0; ok && i < len(pe); i++ {
				ok = pe[i] == re[i]
			}
			n = len(strings.TrimRight(p.Path, "/"))
		}
		if !ok {
			continue
		}
		exact := p.Type == PathExact
		if n > bestLen || (n == bestLen && exact && !bestExact) {
			best, bestLen, bestExact = string(p.Type[0])+p.Path, n, exact
		}
	}
	return best
}

// FuzzRegexHost: any path expression, rewrite target and request on a regex-mode host
// builds and routes without panicking; an expression RE2 refuses is a Problem.
func FuzzRegexHost(f *testing.F) {
	f.Fuzz(func(t *testing.T, path, target, req string) {
		tab, problems := Build(Input{Ingresses: []Ingress{{Namespace: "ns", Name: "f", Created: t0,
			Annotations: map[string]string{AnnotationPrefix + "rewrite-target": target, AnnotationPrefix + "use-regex": "true"},
			Rules:       []Rule{{Host: "h", Paths: []Path{{Path: path, Type: PathImplementationSpecific, Backend: be("s")}}}}}}})
		r := tab.Route("h", req)
		if r == nil {
			return
		}
		if len(problems) > 0 && problems[len(problems)-1].Reason == ReasonInvalidRule {
			t.Fatalf("a path reported invalid is routed: %v", problems)
		}
		p, _, ok := r.Rewrite(req, "a=b")
		if ok && strings.HasPrefix(target, "/") && !strings.HasPrefix(p, "/") {
			t.Errorf("target %q rewrote %q to %q", target, req, p)
		}
	})
}
