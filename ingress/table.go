package ingress

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
)

// Upstream is one Service port and its ready endpoints. A Table holds one Upstream per
// Service port however many routes use it, so a proxy can keep balancing state per
// Upstream.
type Upstream struct {
	Service   ServiceKey
	Endpoints []netip.AddrPort
}

// Route is what a request is matched to: one path of one Ingress, or a default backend.
type Route struct {
	// Ingress is "namespace/name" of the Ingress that owns the path.
	Ingress string
	// Host is the rule's host as written, lower-cased ("" for a rule without host).
	Host string
	// Path and PathType are as written in the Ingress. Path is "" for a default
	// backend (spec.defaultBackend).
	Path     string
	PathType PathType
	Upstream *Upstream
	// Canary, when set, takes the requests that Options-of-the-canary's CanaryPolicy
	// chooses (see CanaryPolicy.Choose).
	Canary       *Upstream
	CanaryPolicy *CanaryPolicy
	// Options are the ingress-nginx annotations of the owning Ingress.
	Options *Options

	re        *regexp.Regexp // regex-mode match, "(?i)^" + Path
	rewriteRe *regexp.Regexp // rewrite-target source, "(?i)" + Path
	order     int            // position of the owning Ingress in merge order
}

// Rewrite returns the path and raw query to send to the backend for a request path and
// raw query, applying the route's rewrite-target. Without one, or when the path does
// not match the route's regular expression, ok is false and the request is sent as is.
func (r *Route) Rewrite(path, rawQuery string) (newPath, newQuery string, ok bool) {
	if r.rewriteRe == nil {
		return path, rawQuery, false
	}
	return rewrite(r.rewriteRe, r.Options.RewriteTarget, path, rawQuery)
}

// vhost is the routes of one host.
type vhost struct {
	name   string
	exact  map[string]*Route // PathExact, by path
	prefix map[string]*Route // PathPrefix and ImplementationSpecific, by path without trailing "/"
	regex  []*Route          // regex mode: first match wins
	// fallback serves requests for this host that match no path: the defaultBackend of
	// the oldest Ingress with a rule for the host.
	fallback  *Route
	regexMode bool
	pending   []*Route // routes in merge order, until finish
}

// match returns the route for a request path, nil when none matches.
func (v *vhost) match(path string) *Route {
	if v.regexMode {
		for _, r := range v.regex {
			if r.re.MatchString(path) {
				return r
			}
		}
		return nil
	}
	// An Exact match is as long as the request path, so no Prefix match is longer and
	// Exact wins a tie.
	if r := v.exact[path]; r != nil {
		return r
	}
	if len(v.prefix) == 0 {
		return nil
	}
	// Try the request path without trailing slashes, then each shorter element-wise
	// prefix, down to "" (the normalised "/"): O(depth) map lookups, no allocation.
	q := strings.TrimRight(path, "/")
	for {
		if r := v.prefix[q]; r != nil {
			return r
		}
		if q == "" {
			return nil
		}
		i := strings.LastIndexByte(q, '/')
		if i < 0 {
			i = 0
		}
		q = q[:i]
	}
}

// Table is an immutable routing table and TLS store. Build one off to the side and
// publish it with an atomic pointer swap: a request keeps the Table it started with.
type Table struct {
	exact     map[string]*vhost // by host
	wildcards map[string]*vhost // "*.foo.com" by "foo.com"
	anyHost   *vhost            // rules without host
	fallback  *Route            // the catch-all default backend; nil means 404
	upstreams []*Upstream
	certs     certStore
	routes    int
}

// Route returns the route for a request's Host (any case, with or without port) and
// path (already cleaned, beginning with "/"). The host is chosen first (exact name,
// then a one-label wildcard, then rules without host), then the longest matching path
// of that host; no match falls back to the host's default backend, then to the
// catch-all default backend. Nil means the built-in 404.
func (t *Table) Route(host, path string) *Route {
	v := t.vhost(canonicalHost(host))
	if v != nil {
		if r := v.match(path); r != nil {
			return r
		}
		if v.fallback != nil {
			return v.fallback
		}
	}
	return t.fallback
}

func (t *Table) vhost(host string) *vhost {
	if v := t.exact[host]; v != nil {
		return v
	}
	if i := strings.IndexByte(host, '.'); i > 0 {
		if v := t.wildcards[host[i+1:]]; v != nil {
			return v
		}
	}
	return t.anyHost
}

// Upstreams are the Service ports the Table routes to, ordered by Service key.
func (t *Table) Upstreams() []*Upstream { return t.upstreams }

// Len is the number of routes (paths and default backends) in the Table.
func (t *Table) Len() int { return t.routes }

// canonicalHost lower-cases a Host header and strips its port and a trailing dot,
// allocating only when the host has upper-case letters.
func canonicalHost(h string) string {
	if i := strings.LastIndexByte(h, ':'); i >= 0 && !strings.Contains(h[i:], "]") {
		h = h[:i]
	}
	h = strings.TrimSuffix(h, ".")
	for i := 0; i < len(h); i++ {
		if 'A' <= h[i] && h[i] <= 'Z' {
			return strings.ToLower(h)
		}
	}
	return h
}

// builder holds the state of one Build.
type builder struct {
	in        *Input
	t         *Table
	problems  []Problem
	upstreams map[ServiceKey]*Upstream
}

func (b *builder) report(ing *Ingress, reason, format string, args ...any) {
	b.problems = append(b.problems, Problem{Namespace: ing.Namespace, Name: ing.Name,
		Reason: reason, Message: fmt.Sprintf(format, args...)})
}

func (b *builder) upstream(ing *Ingress, be Backend) *Upstream {
	k := ServiceKey{Namespace: ing.Namespace, Name: be.Service, Port: be.Port}
	if u := b.upstreams[k]; u != nil {
		return u
	}
	u := &Upstream{Service: k, Endpoints: b.in.Endpoints[k]}
	b.upstreams[k] = u
	return u
}

// backend resolves a Backend, reporting resource backends (refused) and empty ones.
func (b *builder) backend(ing *Ingress, be Backend, where string) *Upstream {
	switch {
	case be.Resource != "":
		b.report(ing, ReasonResourceBackend, "%s: resource backend %s is not supported, only Service backends", where, be.Resource)
		return nil
	case be.Service == "" || (be.Port.Name == "" && be.Port.Number <= 0):
		b.report(ing, ReasonInvalidRule, "%s: backend needs a Service name and port", where)
		return nil
	}
	return b.upstream(ing, be)
}

type parsedIngress struct {
	ing    *Ingress
	opts   *Options
	order  int
	canary bool
}

// Build makes a Table from in and reports what could not be served as written, in a
// deterministic order. See the package doc for the rules.
func Build(in Input) (*Table, []Problem) {
	b := &builder{
		in: &in,
		t: &Table{exact: map[string]*vhost{}, wildcards: map[string]*vhost{},
			certs: certStore{exact: map[string]*certEntry{}, wildcard: map[string]*certEntry{}, def: in.DefaultCertificate}},
		upstreams: map[ServiceKey]*Upstream{},
	}
	ings := make([]*Ingress, len(in.Ingresses))
	for i := range in.Ingresses {
		ings[i] = &in.Ingresses[i]
	}
	slices.SortStableFunc(ings, olderFirst)

	parsed := make([]parsedIngress, len(ings))
	for i, ing := range ings {
		o, errs := ParseAnnotations(ing.Annotations)
		for _, e := range errs {
			reason := ReasonAnnotationInvalid
			if errors.Is(e, ErrIgnoredAnnotation) {
				reason = ReasonAnnotationIgnored
			}
			b.report(ing, reason, "%v", e)
		}
		parsed[i] = parsedIngress{ing: ing, opts: &o, order: i, canary: o.Canary.Enabled}
	}

	// ingress-nginx turns every path of a host into a regular expression when any
	// Ingress of that host uses use-regex or a rewrite-target that differs from its path.
	regexHosts := map[string]bool{}
	for _, p := range parsed {
		if p.canary {
			continue
		}
		for _, rule := range p.ing.Rules {
			h := strings.ToLower(rule.Host)
			if p.opts.UseRegex {
				regexHosts[h] = true
			}
			for _, path := range rule.Paths {
				if p.opts.RewriteTarget != "" && p.opts.RewriteTarget != path.Path {
					regexHosts[h] = true
				}
			}
		}
	}

	for _, p := range parsed {
		if !p.canary {
			b.addMain(p, regexHosts)
		}
	}
	for _, p := range parsed {
		if p.canary {
			b.addCanary(p)
		}
	}
	for _, v := range b.allVhosts() {
		b.finish(v)
	}
	b.addTLS(parsed)

	for _, u := range b.upstreams {
		b.t.upstreams = append(b.t.upstreams, u)
	}
	slices.SortFunc(b.t.upstreams, func(x, y *Upstream) int {
		return cmp.Or(strings.Compare(x.Service.Namespace, y.Service.Namespace),
			strings.Compare(x.Service.Name, y.Service.Name),
			strings.Compare(x.Service.Port.Name, y.Service.Port.Name),
			cmp.Compare(x.Service.Port.Number, y.Service.Port.Number))
	})
	return b.t, b.problems
}

// olderFirst is the merge order: creation time, then namespace, then name.
func olderFirst(x, y *Ingress) int {
	return cmp.Or(x.Created.Compare(y.Created), strings.Compare(x.Namespace, y.Namespace),
		strings.Compare(x.Name, y.Name))
}

func (b *builder) allVhosts() []*vhost {
	var vs []*vhost
	for _, v := range b.t.exact {
		vs = append(vs, v)
	}
	for _, v := range b.t.wildcards {
		vs = append(vs, v)
	}
	if b.t.anyHost != nil {
		vs = append(vs, b.t.anyHost)
	}
	return vs
}

// vhostFor returns (creating) the vhost of a rule host, or nil with a Problem when the
// host is not a valid rule host.
func (b *builder) vhostFor(ing *Ingress, host string, create bool) *vhost {
	h := strings.ToLower(host)
	var m map[string]*vhost
	key := h
	switch {
	case h == "":
		if b.t.anyHost == nil && create {
			b.t.anyHost = &vhost{}
		}
		return b.t.anyHost
	case strings.HasPrefix(h, "*."):
		m, key = b.t.wildcards, h[2:]
	default:
		m = b.t.exact
	}
	if !validHost(key) {
		if create {
			b.report(ing, ReasonInvalidRule, "host %q is not a DNS name or a \"*.\" wildcard of one", host)
		}
		return nil
	}
	v := m[key]
	if v == nil && create {
		v = &vhost{name: h}
		m[key] = v
	}
	return v
}

// validHost accepts what Kubernetes validation accepts for a rule host after an
// optional "*." (a DNS subdomain), loosely: no empty labels, no "*", ":" or "/".
func validHost(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for l := range strings.SplitSeq(h, ".") {
		if l == "" || strings.ContainsAny(l, "*:/[] ") {
			return false
		}
	}
	return true
}

func (b *builder) addMain(p parsedIngress, regexHosts map[string]bool) {
	ing := p.ing
	var def *Route
	if ing.DefaultBackend != nil {
		if u := b.backend(ing, *ing.DefaultBackend, "spec.defaultBackend"); u != nil {
			def = &Route{Ingress: ing.Key(), Upstream: u, Options: p.opts, order: p.order}
			b.t.routes++
		}
	}
	defUsed := false
	if def != nil && b.t.fallback == nil {
		b.t.fallback, defUsed = def, true
	}
	for ri, rule := range ing.Rules {
		v := b.vhostFor(ing, rule.Host, true)
		if v == nil {
			continue
		}
		v.regexMode = regexHosts[strings.ToLower(rule.Host)]
		if def != nil && v.fallback == nil {
			v.fallback, defUsed = def, true
		}
		for pi, path := range rule.Paths {
			where := fmt.Sprintf("spec.rules[%d].http.paths[%d]", ri, pi)
			r := b.route(p, v, rule.Host, path, where)
			if r == nil {
				continue
			}
			v.pending = append(v.pending, r)
		}
	}
	if def != nil && !defUsed {
		b.report(ing, ReasonDefaultBackendNotUsed,
			"spec.defaultBackend is not used: an older Ingress's default backend serves every host of this Ingress and the catch-all")
	}
}

// route validates one path and resolves its backend.
func (b *builder) route(p parsedIngress, v *vhost, host string, path Path, where string) *Route {
	ing := p.ing
	typ := path.Type
	if typ == "" {
		typ = PathImplementationSpecific
	}
	pth := path.Path
	switch typ {
	case PathExact, PathPrefix:
		if !strings.HasPrefix(pth, "/") {
			b.report(ing, ReasonInvalidRule, "%s: path %q must begin with /", where, pth)
			return nil
		}
	case PathImplementationSpecific:
		if pth == "" {
			pth = "/"
		}
		if !v.regexMode && !strings.HasPrefix(pth, "/") {
			b.report(ing, ReasonInvalidRule, "%s: path %q must begin with /", where, pth)
			return nil
		}
	default:
		b.report(ing, ReasonInvalidRule, "%s: unknown pathType %q", where, typ)
		return nil
	}
	u := b.backend(ing, path.Backend, where)
	if u == nil {
		return nil
	}
	return &Route{Ingress: ing.Key(), Host: strings.ToLower(host), Path: pth, PathType: typ,
		Upstream: u, Options: p.opts, order: p.order}
}

// routeKey is what makes two routes of a host the same match: in regex mode the path
// text; otherwise Exact paths by text and Prefix paths without trailing slashes.
func routeKey(v *vhost, r *Route) string {
	switch {
	case v.regexMode:
		return string(r.PathType[0]) + r.Path
	case r.PathType == PathExact:
		return "E" + r.Path
	}
	return "P" + strings.TrimRight(r.Path, "/")
}

// finish indexes a vhost's routes: the first route of a key (oldest Ingress, then
// first listed) wins, later ones are reported.
func (b *builder) finish(v *vhost) {
	seen := map[string]*Route{}
	var kept []*Route
	for _, r := range v.pending {
		k := routeKey(v, r)
		if w := seen[k]; w != nil {
			b.reportConflict(r, w)
			continue
		}
		if v.regexMode {
			re, err := regexp.Compile("(?i)^" + r.Path)
			if err != nil {
				b.problems = append(b.problems, problemOf(r, ReasonInvalidRule,
					fmt.Sprintf("path %q of host %q is not a valid regular expression (regex mode, RE2 syntax): %v", r.Path, hostText(v), err)))
				continue
			}
			if t := r.Options.RewriteTarget; t != "" && t != r.Path {
				rw, err := regexp.Compile("(?i)" + r.Path)
				if err != nil {
					b.problems = append(b.problems, problemOf(r, ReasonInvalidRule,
						fmt.Sprintf("path %q of host %q cannot be used by rewrite-target: %v", r.Path, hostText(v), err)))
					continue
				}
				r.rewriteRe = rw
			}
			r.re = re
		}
		seen[k] = r
		kept = append(kept, r)
		b.t.routes++
	}
	v.pending = nil
	if v.regexMode {
		// ingress-nginx writes regex locations longest path first, then in reverse
		// lexical order, and nginx takes the first regex that matches.
		slices.SortStableFunc(kept, func(x, y *Route) int {
			return cmp.Or(cmp.Compare(len(y.Path), len(x.Path)), strings.Compare(y.Path, x.Path))
		})
		v.regex = kept
		return
	}
	for _, r := range kept {
		if r.PathType == PathExact {
			if v.exact == nil {
				v.exact = map[string]*Route{}
			}
			v.exact[r.Path] = r
		} else {
			if v.prefix == nil {
				v.prefix = map[string]*Route{}
			}
			v.prefix[strings.TrimRight(r.Path, "/")] = r
		}
	}
}

func hostText(v *vhost) string {
	if v.name == "" {
		return "*"
	}
	return v.name
}

func problemOf(r *Route, reason, msg string) Problem {
	ns, name, _ := strings.Cut(r.Ingress, "/")
	return Problem{Namespace: ns, Name: name, Reason: reason, Message: msg}
}

func (b *builder) reportConflict(loser, winner *Route) {
	host := loser.Host
	if host == "" {
		host = "*"
	}
	if loser.Ingress == winner.Ingress {
		b.problems = append(b.problems, problemOf(loser, ReasonPathConflict,
			fmt.Sprintf("host %s path %s (%s) is listed twice (or equals another path but for a trailing slash); the first one is served",
				host, loser.Path, loser.PathType)))
		return
	}
	b.problems = append(b.problems, problemOf(loser, ReasonPathConflict,
		fmt.Sprintf("host %s path %s (%s) is also defined by Ingress %s, which is older (or equally old and first by namespace/name) and is served",
			host, loser.Path, loser.PathType, winner.Ingress)))
}

func (b *builder) addCanary(p parsedIngress) {
	ing := p.ing
	if ing.DefaultBackend != nil {
		b.report(ing, ReasonCanaryIgnored, "spec.defaultBackend of a canary Ingress is not used")
	}
	for ri, rule := range ing.Rules {
		v := b.vhostFor(ing, rule.Host, false)
		for pi, path := range rule.Paths {
			where := fmt.Sprintf("spec.rules[%d].http.paths[%d]", ri, pi)
			if v == nil {
				b.report(ing, ReasonCanaryIgnored, "%s: no non-canary Ingress has host %q", where, rule.Host)
				continue
			}
			r := b.route(p, v, rule.Host, path, where)
			if r == nil {
				continue
			}
			main := b.findPending(v, r)
			switch {
			case main == nil:
				b.report(ing, ReasonCanaryIgnored, "%s: no non-canary Ingress has host %q path %s (%s)",
					where, rule.Host, r.Path, r.PathType)
			case main.Canary != nil:
				b.report(ing, ReasonCanaryIgnored, "%s: host %q path %s already has an older canary", where, rule.Host, r.Path)
			default:
				main.Canary, main.CanaryPolicy = r.Upstream, &p.opts.Canary
			}
		}
	}
}

// findPending returns the first (winning) pending route of v with r's key.
func (b *builder) findPending(v *vhost, r *Route) *Route {
	k := routeKey(v, r)
	for _, m := range v.pending {
		if routeKey(v, m) == k {
			return m
		}
	}
	return nil
}
