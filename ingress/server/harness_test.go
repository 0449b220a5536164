package server

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/ironlb/ironlb/ingress"
)

// Addresses inside the test namespace (198.18.0.0/15 is local there): proxies
// 198.18.0.x, backends 198.18.1.x and 198.18.3.x, clients 198.18.2.x.
var nextIP [4]atomic.Uint32

// freshIP returns an unused address of 198.18.<kind>.0/24 (then <kind>+4, +8, ...).
func freshIP(kind byte) netip.Addr {
	n := nextIP[kind].Add(1) - 1
	return netip.AddrFrom4([4]byte{198, 18, kind + 4*byte(n/250), byte(n%250) + 1})
}

type lab struct {
	t   testing.TB
	srv *Server
	reg *prometheus.Registry
	ip  netip.Addr
}

// newLab starts a Server on a fresh address, ports 80 and 443.
func newLab(t testing.TB, opts Options) *lab {
	t.Helper()
	needNetns(t)
	l := &lab{t: t, reg: prometheus.NewRegistry(), ip: freshIP(0)}
	opts.Metrics = NewMetrics(l.reg)
	srv, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	l.srv = srv
	httpLn := listen(t, netip.AddrPortFrom(l.ip, 80))
	httpsLn := listen(t, netip.AddrPortFrom(l.ip, 443))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, httpLn, httpsLn) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return l
}

func listen(t testing.TB, a netip.AddrPort) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", a.String())
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// update builds and publishes a Table, failing on unexpected Problems.
func (l *lab) update(in ingress.Input) *ingress.Table {
	l.t.Helper()
	tab, problems := ingress.Build(in)
	if len(problems) != 0 {
		l.t.Fatalf("problems: %v", problems)
	}
	l.srv.Update(tab)
	return tab
}

// echo is what the test backends answer: who they are and what they received.
type echo struct {
	Backend string
	URI     string
	Host    string
	Proto   string
	Header  http.Header
	Body    int
}

type backend struct {
	name string
	addr netip.AddrPort
	hits atomic.Int64
}

// startBackend serves h (nil: echo) on a fresh address, port 8080, until the test ends.
func startBackend(t testing.TB, name string, h http.Handler) *backend {
	t.Helper()
	b := &backend{name: name, addr: netip.AddrPortFrom(freshIP(1), 8080)}
	if h == nil {
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n, _ := io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(echo{Backend: name, URI: r.RequestURI, Host: r.Host, Proto: r.Proto, Header: r.Header, Body: int(n)})
		})
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		h.ServeHTTP(w, r)
	}), MaxHeaderBytes: 1 << 20, ReadHeaderTimeout: 10 * time.Second}
	ln := listen(t, b.addr)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return b
}

// deadAddr is an address where nothing listens: connections are refused at once.
func deadAddr() netip.AddrPort { return netip.AddrPortFrom(freshIP(1), 8080) }

func svc(name string) ingress.Backend {
	return ingress.Backend{Service: name, Port: ingress.ServicePort{Number: 80}}
}

func svcKey(name string) ingress.ServiceKey {
	return ingress.ServiceKey{Namespace: "web", Name: name, Port: ingress.ServicePort{Number: 80}}
}

func prefixPath(p, service string) ingress.Path {
	return ingress.Path{Path: p, Type: ingress.PathPrefix, Backend: svc(service)}
}

var created = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// simpleIngress routes host/ to service with the given annotations.
func simpleIngress(name, host, service string, ann map[string]string) ingress.Ingress {
	return ingress.Ingress{Namespace: "web", Name: name, Created: created, Annotations: ann,
		Rules: []ingress.Rule{{Host: host, Paths: []ingress.Path{prefixPath("/", service)}}}}
}

func endpoints(m map[string][]*backend) map[ingress.ServiceKey][]netip.AddrPort {
	out := map[ingress.ServiceKey][]netip.AddrPort{}
	for name, bs := range m {
		for _, b := range bs {
			out[svcKey(name)] = append(out[svcKey(name)], b.addr)
		}
	}
	return out
}

type clientOpts struct {
	source     netip.Addr // client address (default: a fresh one)
	serverName string     // SNI for https (default: the URL host)
	conns      *atomic.Int64
}

// client sends every request to the lab's proxy, whatever the URL's host, from a
// source address of 198.18.2.0/24. TLS certificates are not verified: tests look at
// which certificate was served.
func (l *lab) client(o clientOpts) *http.Client {
	if !o.source.IsValid() {
		o.source = freshIP(2)
	}
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: o.source.AsSlice()}, Timeout: 5 * time.Second}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			_, port, _ := net.SplitHostPort(addr)
			if o.conns != nil {
				o.conns.Add(1)
			}
			return d.DialContext(ctx, "tcp", net.JoinHostPort(l.ip.String(), port))
		},
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true, ServerName: o.serverName}, //nolint:gosec // tests inspect the served certificate
		ForceAttemptHTTP2: true,
	}
	l.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// do sends a request and decodes an echo answer (Backend is "" when the answer is not
// from a test backend).
func (l *lab) do(c *http.Client, method, url string, body io.Reader, hdr map[string]string) (*http.Response, echo) {
	l.t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		l.t.Fatal(err)
	}
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	res, err := c.Do(req)
	if err != nil {
		l.t.Fatalf("%s %s: %v", method, url, err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		l.t.Fatalf("%s %s: reading: %v", method, url, err)
	}
	var e echo
	if strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(raw, &e); err != nil {
			l.t.Fatalf("%s %s: %v in %q", method, url, err, raw)
		}
	}
	return res, e
}

func (l *lab) get(c *http.Client, url string) (int, string) {
	l.t.Helper()
	res, e := l.do(c, "GET", url, nil, nil)
	return res.StatusCode, e.Backend
}

// counter reads a counter of the lab's registry, or a histogram's observation
// count (0 when absent).
func (l *lab) counter(name string, labels map[string]string) float64 {
	l.t.Helper()
	mfs, err := l.reg.Gather()
	if err != nil {
		l.t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if labelsMatch(m, labels) {
				// A histogram counts its observations.
				sum += m.GetCounter().GetValue() + float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return sum
}

func labelsMatch(m *dto.Metric, want map[string]string) bool {
	got := map[string]string{}
	for _, lp := range m.GetLabel() {
		got[lp.GetName()] = lp.GetValue()
	}
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	return true
}

func servedCert(res *http.Response) string {
	if res.TLS == nil || len(res.TLS.PeerCertificates) == 0 {
		return ""
	}
	return res.TLS.PeerCertificates[0].Subject.CommonName
}

func mustCert(t testing.TB, names ...string) *tls.Certificate {
	t.Helper()
	c, err := ingress.SelfSigned(time.Hour, names...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
