package ingress_test

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/ironlb/ironlb/ingress"
)

// The fan-out of the Kubernetes documentation plus a name-based virtual host, with the
// endpoints a shell would read from EndpointSlices.
func ExampleBuild() {
	svc := func(name string) ingress.Backend {
		return ingress.Backend{Service: name, Port: ingress.ServicePort{Number: 80}}
	}
	key := func(name string) ingress.ServiceKey {
		return ingress.ServiceKey{Namespace: "web", Name: name, Port: ingress.ServicePort{Number: 80}}
	}
	table, problems := ingress.Build(ingress.Input{
		Ingresses: []ingress.Ingress{{
			Namespace: "web", Name: "fanout", Created: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
			Rules: []ingress.Rule{
				{Host: "foo.bar.com", Paths: []ingress.Path{
					{Path: "/foo", Type: ingress.PathPrefix, Backend: svc("s1")},
					{Path: "/bar", Type: ingress.PathPrefix, Backend: svc("s2")},
				}},
				{Host: "bar.foo.com", Paths: []ingress.Path{{Path: "/", Type: ingress.PathPrefix, Backend: svc("s2")}}},
			},
			Annotations: map[string]string{"nginx.ingress.kubernetes.io/server-snippet": "..."},
		}},
		Endpoints: map[ingress.ServiceKey][]netip.AddrPort{
			key("s1"): {netip.MustParseAddrPort("198.18.1.1:8080")},
			key("s2"): {netip.MustParseAddrPort("198.18.1.2:8080"), netip.MustParseAddrPort("198.18.1.3:8080")},
		},
	})
	for _, req := range []struct{ host, path string }{
		{"foo.bar.com", "/foo/index.html"}, {"FOO.BAR.COM:80", "/bar"}, {"bar.foo.com", "/x"}, {"foo.bar.com", "/foobar"},
	} {
		if r := table.Route(req.host, req.path); r != nil {
			fmt.Println(req.host+req.path, "->", r.Upstream.Service, r.Upstream.Endpoints)
		} else {
			fmt.Println(req.host+req.path, "-> 404")
		}
	}
	for _, p := range problems {
		fmt.Println(p)
	}
	// Output:
	// foo.bar.com/foo/index.html -> web/s1:80 [198.18.1.1:8080]
	// FOO.BAR.COM:80/bar -> web/s2:80 [198.18.1.2:8080 198.18.1.3:8080]
	// bar.foo.com/x -> web/s2:80 [198.18.1.2:8080 198.18.1.3:8080]
	// foo.bar.com/foobar -> 404
	// web/fanout: AnnotationIgnored: annotation nginx.ingress.kubernetes.io/server-snippet: not implemented by ironlb-ingress; ignored
}
