// Package ingress is the routing core of ironlb-ingress: it turns a set of Ingresses
// (networking.k8s.io/v1 semantics, in a neutral form without Kubernetes types), the
// ready endpoints of the Services they name and their TLS certificates into an
// immutable Table that answers two questions: which route serves a request (Route) and
// which certificate answers a TLS handshake (Certificate). It does no I/O; the HTTP
// shell (package ingress/server) and the Kubernetes shell (package ingress/controller)
// are built on it.
//
// Typical use:
//
//	table, problems := ingress.Build(ingress.Input{
//		Ingresses:    ings,      // translated Ingress objects of our IngressClass
//		Endpoints:    endpoints, // ready endpoints per referenced Service port
//		Certificates: certs,     // parsed with ParseCertificate
//	})
//	for _, p := range problems {
//		// emit a Warning Event p.Reason/p.Message on Ingress p.Namespace/p.Name
//	}
//	current.Store(table) // an atomic.Pointer[ingress.Table]; requests Load it
//
//	// per request:
//	r := current.Load().Route(req.Host, cleanedPath) // nil: built-in 404
//
// # Matching
//
// A request's host is matched first: an exact rule host (case-insensitive, port and a
// trailing dot ignored), else a wildcard "*.foo.com", which matches exactly one more
// label (bar.foo.com, not baz.bar.foo.com nor foo.com), else the rules without host.
// Within the chosen host the longest matching path wins and, at equal length, Exact
// wins over Prefix. Prefix matching is element-wise on "/" and ignores trailing
// slashes on both sides: /foo matches /foo, /foo/ and /foo/bar but not /foobar; /foo/
// matches /foo. A request that matches no path of its host goes to the host's default
// backend (the spec.defaultBackend of the oldest Ingress with a rule for that host),
// then to the catch-all default backend (the spec.defaultBackend of the oldest Ingress
// that has one), then to the proxy's built-in 404. There is no fall-through from a
// host to the rules without host, as in nginx.
//
// ImplementationSpecific means Prefix, with one exception shared with ingress-nginx:
// regex mode. When any Ingress with a rule for a host sets the annotation use-regex,
// or a rewrite-target that differs from its path, every path of that host (of every
// Ingress and every path type) becomes a case-insensitive regular expression anchored
// at the start ("(?i)^" + path, RE2 syntax); they are tried longest path first, then in
// reverse lexical order, and the first that matches wins, exactly as the nginx
// locations ingress-nginx writes. rewrite-target then replaces the whole request path
// by the target with $1..$9 taken from the path expression's capture groups.
//
// # Merging
//
// Ingresses are merged in age order: creation time, then namespace, then name. When
// two Ingresses define the same path of the same host (same path type and, for
// Prefix, the same path but for trailing slashes; in regex mode the same text), the
// older one is served and the other gets a PathConflict Problem. Resource backends are
// refused (ResourceBackendRefused) and the path is left out. Annotations under
// AnnotationPrefix that ironlb does not implement give one AnnotationIgnored Problem
// each. Canary Ingresses (annotation canary: "true") add no routes of their own: each
// of their paths becomes the canary of the main route with the same host and path,
// which then splits traffic by CanaryPolicy.
//
// # TLS
//
// The certificate of a host is the Secret of the oldest Ingress that lists the host in
// spec.tls (a "*." host serves every one-label subdomain); a rule host not listed
// anywhere gets the first certificate of its own Ingress that covers it (by SAN), as
// in ingress-nginx. A Secret that is missing, unparsable, or does not cover a listed
// host gives a Problem and that host the default certificate; other hosts are
// unaffected. A server name that matches no host gets the default certificate.
//
// # Costs
//
// Build is O(P log P + R) for P paths and R TLS hosts, plus compiling the regular
// expressions of regex-mode hosts; it allocates a new Table each time and shares the
// endpoint slices of Input. Route costs two map lookups for the host and, on an
// ordinary host, one map lookup per path element of the request (longest first),
// without allocating; on a regex-mode host it tries the host's expressions in order
// (linear in the paths of that host). Certificate is at most two map lookups. A Table
// is immutable and safe for concurrent use.
package ingress
