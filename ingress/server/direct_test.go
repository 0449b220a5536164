package server

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"net/textproto"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ironlb/ironlb/ingress"
)

// rawBackend answers every request read from a connection with answer(request
// number on that connection, request), written verbatim (where it has a pause, the
// parts before and after are written 30ms apart, so the proxy reads them
// separately); when answer returns close, the connection is closed after the answer. It counts the connections accepted.
type rawBackend struct {
	addr  netip.AddrPort
	conns atomic.Int64
}

// pause separates the parts of a rawBackend's answer written one after the other.
const pause = "\x00"

func startRawBackend(t testing.TB, answer func(n int, r *http.Request) (resp string, close bool)) *rawBackend {
	t.Helper()
	b := &rawBackend{addr: netip.AddrPortFrom(freshIP(1), 8080)}
	ln := listen(t, b.addr)
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.conns.Add(1)
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for n := 1; ; n++ {
					r, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					resp, closeAfter := answer(n, r)
					for i, piece := range strings.Split(resp, pause) {
						if i > 0 {
							time.Sleep(30 * time.Millisecond)
						}
						if _, err := io.WriteString(c, piece); err != nil {
							return
						}
					}
					if closeAfter {
						return
					}
				}
			}()
		}
	}()
	return b
}

func rawEndpoints(name string, bs ...*rawBackend) map[ingress.ServiceKey][]netip.AddrPort {
	var eps []netip.AddrPort
	for _, b := range bs {
		eps = append(eps, b.addr)
	}
	return map[ingress.ServiceKey][]netip.AddrPort{svcKey(name): eps}
}

// A backend that closes every connection after one answer without saying so
// (no "Connection: close"), as one whose keep-alive timeout ran out: the pooled
// connection is dead when the next request comes, and the request is sent again on a
// new one, without a failure counted against the endpoint. A HEAD request (no body in
// its answer) and PUT without body take the same path.
func TestDirectReplacesConnectionClosedWhileIdle(t *testing.T) {
	l := newLab(t, Options{FailureThreshold: 1, EjectFor: time.Hour})
	b := startRawBackend(t, func(n int, r *http.Request) (string, bool) {
		body := fmt.Sprintf("%s %s #%d", r.Method, r.URL.Path, n)
		head := fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", len(body))
		if r.Method == "HEAD" {
			return head, true
		}
		return head + body, true
	})
	l.update(ingress.Input{Ingresses: []ingress.Ingress{simpleIngress("i", "app.example", "s", nil)}, Endpoints: rawEndpoints("s", b)})
	c := l.client(clientOpts{})
	for i, method := range []string{"GET", "GET", "HEAD", "PUT", "GET"} {
		req, _ := http.NewRequest(method, "http://app.example/x", nil)
		res, err := c.Do(req)
		if err != nil {
			t.Fatalf("request %d (%s): %v", i, method, err)
		}
		got, _ := io.ReadAll(res.Body)
		res.Body.Close()
		want := method + " /x #1"
		if method == "HEAD" {
			want = ""
		}
		if res.StatusCode != http.StatusOK || string(got) != want {
			t.Fatalf("request %d (%s): %d %q, want 200 %q", i, method, res.StatusCode, got, want)
		}
	}
	if n := l.counter("ironlb_ingress_endpoint_ejections_total", nil); n != 0 {
		t.Errorf("a connection closed while idle ejected the endpoint (%v ejections)", n)
	}
	if n := l.counter("ironlb_ingress_upstream_retries_total", nil); n != 0 {
		t.Errorf("%v requests were retried on another endpoint; want the same endpoint on a new connection", n)
	}
}

// Keep-alive: sequential requests, over HTTP/1.1 and HTTP/2, share one backend
// connection; an endpoint that leaves the table has its idle connection closed.
func TestDirectKeepAliveAndRetire(t *testing.T) {
	l := newLab(t, Options{})
	var states [3]atomic.Int64 // new, closed, and the idle ones
	be := &backend{name: "b", addr: netip.AddrPortFrom(freshIP(1), 8080)}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}), ConnState: func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			states[0].Add(1)
		case http.StateClosed:
			states[1].Add(1)
		}
	}}
	ln := listen(t, be.addr)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	other := startBackend(t, "other", nil)
	ing := []ingress.Ingress{simpleIngress("i", "app.example", "s", nil)}
	l.update(ingress.Input{Ingresses: ing, Endpoints: endpoints(map[string][]*backend{"s": {be}})})
	c := l.client(clientOpts{})
	for i := range 50 {
		if code, _ := l.get(c, "http://app.example/"); code != http.StatusOK {
			t.Fatalf("request %d: %d", i, code)
		}
	}
	// HTTP/2 clients (TLS) take the same path and connection.
	h2 := l.client(clientOpts{serverName: "app.example"})
	for i := range 10 {
		res, _ := l.do(h2, "GET", "https://app.example/", nil, nil)
		if res.StatusCode != http.StatusOK || res.ProtoMajor != 2 {
			t.Fatalf("HTTP/2 request %d: %d over %s", i, res.StatusCode, res.Proto)
		}
	}
	if n := states[0].Load(); n != 1 {
		t.Errorf("50 HTTP/1.1 and 10 HTTP/2 sequential requests opened %d backend connections, want 1", n)
	}
	l.update(ingress.Input{Ingresses: ing, Endpoints: endpoints(map[string][]*backend{"s": {other}})})
	deadline := time.Now().Add(5 * time.Second)
	for states[1].Load() != 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := states[1].Load(); n != 1 {
		t.Errorf("after the endpoint left the table, %d of its connections were closed, want 1", n)
	}
}

// What crosses the proxy: hop-by-hop headers (and the ones Connection names) do not,
// in either direction; "TE: trailers" does; 1xx answers, trailers and a body of unknown
// length reach the client, the body as it comes.
func TestDirectHeadersTrailersStreaming(t *testing.T) {
	l := newLab(t, Options{})
	release := make(chan struct{})
	b := startBackend(t, "b", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/headers":
			var seen []string
			for _, k := range []string{"X-Private", "Keep-Alive", "Te", "Proxy-Authorization", "X-Kept"} {
				seen = append(seen, k+"="+strings.Join(r.Header.Values(k), ","))
			}
			w.Header().Set("Connection", "X-Backend-Private")
			w.Header().Set("X-Backend-Private", "secret")
			w.Header().Set("Keep-Alive", "timeout=5")
			_, _ = io.WriteString(w, strings.Join(seen, " "))
		case "/trailers":
			w.Header().Set("Trailer", "X-Checksum")
			_, _ = io.WriteString(w, "body")
			w.Header().Set("X-Checksum", "abc")
		case "/hints":
			w.Header().Set("Link", "</style.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			w.Header().Del("Link")
			_, _ = io.WriteString(w, "final")
		case "/stream":
			_, _ = io.WriteString(w, "first ")
			w.(http.Flusher).Flush()
			<-release
			_, _ = io.WriteString(w, "second")
		}
	}))
	l.update(ingress.Input{Ingresses: []ingress.Ingress{simpleIngress("i", "app.example", "s", nil)},
		Endpoints: endpoints(map[string][]*backend{"s": {b}})})
	c := l.client(clientOpts{})

	req, _ := http.NewRequest("GET", "http://app.example/headers", nil)
	req.Header.Set("Connection", "X-Private")
	req.Header.Set("X-Private", "secret")
	req.Header.Set("Keep-Alive", "timeout=5")
	req.Header.Set("Te", "trailers, deflate")
	req.Header.Set("Proxy-Authorization", "Basic eDp5")
	req.Header.Set("X-Kept", "yes")
	res, err := c.Do(req)
	must(t, err)
	got, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if want := "X-Private= Keep-Alive= Te=trailers Proxy-Authorization= X-Kept=yes"; string(got) != want {
		t.Errorf("backend saw %q, want %q", got, want)
	}
	if res.Header.Get("X-Backend-Private") != "" || res.Header.Get("Keep-Alive") != "" {
		t.Errorf("hop-by-hop response headers reached the client: %v", res.Header)
	}

	res, err = c.Get("http://app.example/trailers")
	must(t, err)
	got, _ = io.ReadAll(res.Body)
	res.Body.Close()
	if string(got) != "body" || res.Trailer.Get("X-Checksum") != "abc" {
		t.Errorf("trailers: body %q, trailer %v; want body and X-Checksum: abc", got, res.Trailer)
	}

	var hints []string
	ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
		Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
			hints = append(hints, fmt.Sprintf("%d %s", code, h.Get("Link")))
			return nil
		}})
	req, _ = http.NewRequestWithContext(ctx, "GET", "http://app.example/hints", nil)
	res, err = c.Do(req)
	must(t, err)
	got, _ = io.ReadAll(res.Body)
	res.Body.Close()
	if len(hints) != 1 || hints[0] != "103 </style.css>; rel=preload" || string(got) != "final" {
		t.Errorf("early hints %q then %q; want one 103 with the Link header, then final", hints, got)
	}

	res, err = c.Get("http://app.example/stream")
	must(t, err)
	first := make([]byte, len("first "))
	if _, err := io.ReadFull(res.Body, first); err != nil || string(first) != "first " {
		t.Fatalf("the first part of a streamed body did not arrive before the rest: %q %v", first, err)
	}
	close(release)
	rest, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if string(rest) != "second" {
		t.Errorf("rest of the stream %q", rest)
	}
}

// A client that goes away while the backend has not answered ends the backend's
// request (its connection is closed) rather than keeping it until
// proxy-read-timeout.
func TestDirectClientGone(t *testing.T) {
	l := newLab(t, Options{})
	arrived, gone := make(chan struct{}), make(chan struct{})
	b := startBackend(t, "b", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		select {
		case <-r.Context().Done():
			close(gone)
		case <-time.After(20 * time.Second):
		}
	}))
	l.update(ingress.Input{Ingresses: []ingress.Ingress{simpleIngress("i", "app.example", "s", nil)},
		Endpoints: endpoints(map[string][]*backend{"s": {b}})})
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://app.example/", nil)
	errc := make(chan error, 1)
	go func() {
		_, err := l.client(clientOpts{}).Do(req)
		errc <- err
	}()
	select {
	case <-arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("the request did not reach the backend")
	}
	cancel()
	<-errc
	select {
	case <-gone:
	case <-time.After(10 * time.Second):
		t.Fatal("the backend's request went on after the client went away")
	}
}

// Response headers over MaxHeaderBytes are refused (502), not buffered without bound.
func TestDirectResponseHeadLimit(t *testing.T) {
	l := newLab(t, Options{MaxHeaderBytes: 4 << 10})
	b := startRawBackend(t, func(int, *http.Request) (string, bool) {
		return "HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("x", 64<<10) + "\r\nContent-Length: 0\r\n\r\n", false
	})
	l.update(ingress.Input{Ingresses: []ingress.Ingress{simpleIngress("i", "app.example", "s", nil)}, Endpoints: rawEndpoints("s", b)})
	if code, _ := l.get(l.client(clientOpts{}), "http://app.example/"); code != http.StatusBadGateway {
		t.Errorf("64 KiB response header with a 4 KiB limit: %d, want 502", code)
	}
}
