package server

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/ironlb/ironlb/ingress"
)

// TestRetriesAndPassiveHealth: a Service with a dead endpoint (connection refused)
// answers every request, idempotent or not, from the live one; after FailureThreshold
// failures the dead endpoint is ejected and no longer tried.
func TestRetriesAndPassiveHealth(t *testing.T) {
	for _, lb := range []Balancing{RoundRobin, LeastRequests} {
		t.Run([]string{"RoundRobin", "LeastRequests"}[lb], func(t *testing.T) {
			l := newLab(t, Options{Balancing: lb, FailureThreshold: 2, EjectFor: time.Hour})
			live := startBackend(t, "live", nil)
			dead := deadAddr()
			l.update(ingress.Input{Ingresses: []ingress.Ingress{simpleIngress("i", "app.example", "s", nil)},
				Endpoints: map[ingress.ServiceKey][]netip.AddrPort{svcKey("s"): {dead, live.addr}}})
			c := l.client(clientOpts{})
			for i := range 20 {
				method, body := "GET", io.Reader(nil)
				if i%2 == 1 {
					method, body = "POST", strings.NewReader("payload") // not idempotent: retried only because nothing was sent
				}
				res, e := l.do(c, method, "http://app.example/", body, nil)
				if res.StatusCode != http.StatusOK || e.Backend != "live" {
					t.Fatalf("request %d (%s): %d from %q, want 200 from live", i, method, res.StatusCode, e.Backend)
				}
			}
			if n := l.counter("ironlb_ingress_endpoint_ejections_total", nil); n != 1 {
				t.Errorf("ejections_total = %v, want 1 (the dead endpoint, once)", n)
			}
			retries := l.counter("ironlb_ingress_upstream_retries_total", nil)
			if retries < 1 {
				t.Errorf("retries_total = %v, want >= 1", retries)
			}
			for range 10 {
				l.get(c, "http://app.example/")
			}
			if n := l.counter("ironlb_ingress_upstream_retries_total", nil); n != retries {
				t.Errorf("retries went on after the ejection: %v -> %v", retries, n)
			}
		})
	}

	l := newLab(t, Options{})
	l.update(ingress.Input{Ingresses: []ingress.Ingress{simpleIngress("i", "app.example", "s", nil)},
		Endpoints: map[ingress.ServiceKey][]netip.AddrPort{svcKey("s"): {deadAddr(), deadAddr()}}})
	if code, _ := l.get(l.client(clientOpts{}), "http://app.example/"); code != http.StatusBadGateway {
		t.Errorf("every endpoint dead: %d, want 502", code)
	}
}

func TestCanaryWeight(t *testing.T) {
	l := newLab(t, Options{})
	main, canary := startBackend(t, "main", nil), startBackend(t, "canary", nil)
	can := simpleIngress("canary", "app.example", "canary", map[string]string{
		ingress.AnnotationPrefix + "canary": "true", ingress.AnnotationPrefix + "canary-weight": "30",
		ingress.AnnotationPrefix + "canary-by-header": "X-Canary"})
	l.update(ingress.Input{Ingresses: []ingress.Ingress{simpleIngress("main", "app.example", "main", nil), can},
		Endpoints: endpoints(map[string][]*backend{"main": {main}, "canary": {canary}})})
	c := l.client(clientOpts{})
	const n = 1000
	got := map[string]int{}
	for range n {
		_, b := l.get(c, "http://app.example/")
		got[b]++
	}
	if got["main"]+got["canary"] != n || got["canary"] < n/5 || got["canary"] > 2*n/5 {
		t.Errorf("canary-weight 30: %v of %d; want about 30%% canary (between 20%% and 40%%)", got, n)
	}
	for value, want := range map[string]string{"always": "canary", "never": "main"} {
		for range 20 {
			if _, e := l.do(c, "GET", "http://app.example/", nil, map[string]string{"X-Canary": value}); e.Backend != want {
				t.Fatalf("X-Canary: %s reached %q, want %q", value, e.Backend, want)
			}
		}
	}
}

func TestReadTimeout(t *testing.T) {
	l := newLab(t, Options{})
	stall := startBackend(t, "stall", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/body" {
			w.Header().Set("Content-Length", "100")
			_, _ = io.WriteString(w, "first part")
			w.(http.Flusher).Flush()
		}
		select {
		case <-r.Context().Done():
		case <-time.After(20 * time.Second):
		}
	}))
	l.update(ingress.Input{Ingresses: []ingress.Ingress{simpleIngress("i", "app.example", "stall",
		map[string]string{ingress.AnnotationPrefix + "proxy-read-timeout": "1"})},
		Endpoints: endpoints(map[string][]*backend{"stall": {stall}})})
	c := l.client(clientOpts{})
	start := time.Now()
	if code, _ := l.get(c, "http://app.example/headers"); code != http.StatusGatewayTimeout {
		t.Errorf("backend silent before its headers: %d, want 504", code)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("504 took %v with proxy-read-timeout 1s", d)
	}
	// Headers may or may not have reached the client when the body stalls; either
	// way the response must be cut, not hang or end as if complete.
	if res, err := c.Get("http://app.example/body"); err == nil {
		_, err = io.ReadAll(res.Body)
		res.Body.Close()
		if err == nil {
			t.Error("a response whose backend stalled mid-body ended cleanly; want it cut")
		}
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("stalled body cut after %v", d)
	}
}

// TestBackendProtocols: HTTPS to a TLS backend, GRPC (h2c) and GRPCS backends, reached
// by gRPC clients over h2c on port 80 and over TLS on 443.
func TestBackendProtocols(t *testing.T) {
	l := newLab(t, Options{})
	backendCert := mustCert(t, "backend.internal")

	httpsAddr := netip.AddrPortFrom(freshIP(1), 8443)
	httpsSrv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "tls backend saw "+r.Proto+" over TLS="+map[bool]string{true: "yes", false: "no"}[r.TLS != nil])
	}), TLSConfig: &tls.Config{Certificates: []tls.Certificate{*backendCert}}, ReadHeaderTimeout: 10 * time.Second}
	httpsLn := listen(t, httpsAddr)
	go func() { _ = httpsSrv.ServeTLS(httpsLn, "", "") }()
	t.Cleanup(func() { _ = httpsSrv.Close() })

	grpcServe := func(opts ...grpc.ServerOption) netip.AddrPort {
		gs := grpc.NewServer(opts...)
		hs := health.NewServer()
		hs.SetServingStatus("ironlb.test", healthpb.HealthCheckResponse_SERVING)
		healthpb.RegisterHealthServer(gs, hs)
		a := netip.AddrPortFrom(freshIP(1), 9090)
		ln := listen(t, a)
		go func() { _ = gs.Serve(ln) }()
		t.Cleanup(gs.Stop)
		return a
	}
	grpcAddr := grpcServe()
	grpcsAddr := grpcServe(grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{*backendCert}})))

	proto := func(p string) map[string]string {
		return map[string]string{ingress.AnnotationPrefix + "backend-protocol": p}
	}
	l.update(ingress.Input{
		Ingresses: []ingress.Ingress{
			simpleIngress("https", "https.example", "https", proto("HTTPS")),
			simpleIngress("grpc", "grpc.example", "grpc", proto("GRPC")),
			simpleIngress("grpcs", "grpcs.example", "grpcs", proto("GRPCS")),
		},
		Endpoints: map[ingress.ServiceKey][]netip.AddrPort{svcKey("https"): {httpsAddr}, svcKey("grpc"): {grpcAddr}, svcKey("grpcs"): {grpcsAddr}},
	})

	res, err := l.client(clientOpts{}).Get("http://https.example/")
	must(t, err)
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if string(body) != "tls backend saw HTTP/1.1 over TLS=yes" {
		t.Errorf("backend-protocol HTTPS: %d %q", res.StatusCode, body)
	}

	for _, tc := range []struct{ name, host string }{{"GRPC", "grpc.example"}, {"GRPCS", "grpcs.example"}} {
		for _, front := range []string{"h2c", "tls"} {
			creds := insecure.NewCredentials()
			port := "80"
			if front == "tls" {
				creds, port = credentials.NewTLS(&tls.Config{InsecureSkipVerify: true, ServerName: tc.host}), "443" //nolint:gosec // test
			}
			src := &net.Dialer{LocalAddr: &net.TCPAddr{IP: freshIP(2).AsSlice()}}
			conn, err := grpc.NewClient("passthrough:///"+net.JoinHostPort(l.ip.String(), port),
				grpc.WithTransportCredentials(creds), grpc.WithAuthority(tc.host),
				grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
					return src.DialContext(ctx, "tcp", addr)
				}))
			must(t, err)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "ironlb.test"})
			cancel()
			_ = conn.Close()
			if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
				t.Errorf("backend-protocol %s, client over %s: %v %v, want SERVING", tc.name, front, resp, err)
			}
		}
	}
}
