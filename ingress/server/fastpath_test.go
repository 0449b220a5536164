package server

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/ironlb/ironlb/ingress"
)

// rawClient opens a plain TCP connection to the lab's proxy on port 80.
func (l *lab) rawClient() (net.Conn, *bufio.Reader) {
	l.t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: freshIP(2).AsSlice()}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", netip.AddrPortFrom(l.ip, 80).String())
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	return c, bufio.NewReader(c)
}

func readResponse(t *testing.T, br *bufio.Reader, method string) (*http.Response, string) {
	t.Helper()
	res, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("reading the response: %v", err)
	}
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("reading the body: %v", err)
	}
	return res, string(b)
}

// Pipelined requests on one connection, GET and HEAD, are answered in order and
// reach the backend with its headers; a request with a body on the same connection
// goes to net/http (with the bytes already read) and is answered too, as are the
// requests after it.
func TestFastPathPipelinedHeadAndFallback(t *testing.T) {
	l := newLab(t, Options{})
	b := startBackend(t, "b", nil)
	l.update(ingress.Input{Ingresses: []ingress.Ingress{simpleIngress("i", "app.example", "s", nil)},
		Endpoints: endpoints(map[string][]*backend{"s": {b}})})
	c, br := l.rawClient()
	_, err := io.WriteString(c, "GET /one?x=1 HTTP/1.1\r\nHost: app.example\r\nX-Forwarded-For: 203.0.113.9\r\nConnection: X-Private\r\nX-Private: 1\r\n\r\n"+
		"HEAD /two HTTP/1.1\r\nHost: app.example\r\n\r\n"+
		"GET /three HTTP/1.1\r\nHost: app.example\r\n\r\n"+
		"POST /four HTTP/1.1\r\nHost: app.example\r\nContent-Length: 5\r\n\r\nhello"+
		"GET /five HTTP/1.1\r\nHost: app.example\r\nConnection: close\r\n\r\n")
	must(t, err)
	res, body := readResponse(t, br, "GET")
	if res.StatusCode != 200 || !strings.Contains(body, `"URI":"/one?x=1"`) {
		t.Fatalf("first: %d %s", res.StatusCode, body)
	}
	for _, want := range []string{`"X-Forwarded-For":["` + strings.Split(c.LocalAddr().String(), ":")[0] + `"]`, `"X-Forwarded-Proto":["http"]`, `"X-Forwarded-Port":["80"]`} {
		if !strings.Contains(body, want) {
			t.Errorf("backend saw %s, want %s in it", body, want)
		}
	}
	if strings.Contains(body, "X-Private") {
		t.Errorf("a header named by Connection reached the backend: %s", body)
	}
	res, body = readResponse(t, br, "HEAD")
	if res.StatusCode != 200 || body != "" || res.Header.Get("Content-Type") != "application/json" {
		t.Errorf("HEAD: %d %q %v", res.StatusCode, body, res.Header)
	}
	res, body = readResponse(t, br, "GET")
	if res.StatusCode != 200 || !strings.Contains(body, `"URI":"/three"`) {
		t.Errorf("third: %d %s", res.StatusCode, body)
	}
	res, body = readResponse(t, br, "POST")
	if res.StatusCode != 200 || !strings.Contains(body, `"URI":"/four"`) || !strings.Contains(body, `"Body":5`) {
		t.Errorf("POST with a body: %d %s", res.StatusCode, body)
	}
	res, body = readResponse(t, br, "GET")
	if res.StatusCode != 200 || !strings.Contains(body, `"URI":"/five"`) || !res.Close {
		t.Errorf("fifth (Connection: close): %d close %v %s", res.StatusCode, res.Close, body)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("after Connection: close the connection stayed open (%v)", err)
	}
	if n := l.counter("ironlb_ingress_requests_total", map[string]string{"ingress": "web/i", "service": "web/s", "code": "200"}); n != 5 {
		t.Errorf("requests_total counted %v requests, want 5", n)
	}
}

// A malformed head is answered 400 and the connection closed; a head over
// MaxHeaderBytes 431, as net/http always answered them.
func TestFastPathMalformedAndHugeHeads(t *testing.T) {
	l := newLab(t, Options{MaxHeaderBytes: 16 << 10})
	b := startBackend(t, "b", nil)
	l.update(ingress.Input{Ingresses: []ingress.Ingress{simpleIngress("i", "app.example", "s", nil)},
		Endpoints: endpoints(map[string][]*backend{"s": {b}})})
	for _, head := range []string{
		"GET / HTTP/1.1\r\nHost: app.example\r\nBad Name: 1\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: app.example\r\nHost: other.example\r\n\r\n",
		"GET / HTTP/1.1\r\n\r\n",
		"GET /% HTTP/1.1\r\nHost: app.example\r\n\r\n",
	} {
		c, br := l.rawClient()
		_, err := io.WriteString(c, head)
		must(t, err)
		res, _ := readResponse(t, br, "GET")
		if res.StatusCode != http.StatusBadRequest {
			t.Errorf("%q: %d, want 400", head, res.StatusCode)
		}
		if _, err := br.ReadByte(); err != io.EOF {
			t.Errorf("%q: the connection stayed open after 400 (%v)", head, err)
		}
	}
	c, br := l.rawClient()
	_, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: app.example\r\nX-Big: "+strings.Repeat("x", 64<<10)+"\r\n\r\n")
	must(t, err)
	// Only the head: net/http closes while the client is still sending.
	if res, err := http.ReadResponse(br, &http.Request{Method: "GET"}); err != nil || res.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("64 KiB head with a 16 KiB limit: %v %v, want 431", res, err)
	}
	// A head larger than the fast path's buffer but within the limit is served.
	c, br = l.rawClient()
	_, err = io.WriteString(c, "GET /big HTTP/1.1\r\nHost: app.example\r\nX-Big: "+strings.Repeat("x", 12<<10)+"\r\n\r\n")
	must(t, err)
	if res, body := readResponse(t, br, "GET"); res.StatusCode != 200 || !strings.Contains(body, `"URI":"/big"`) {
		t.Errorf("12 KiB head: %d %s", res.StatusCode, body)
	}
}

// A client that closes its connection mid-response ends the exchange: the backend
// connection is closed rather than reused with a half-read response, and the next
// client is served.
func TestFastPathClientClosesMidResponse(t *testing.T) {
	l := newLab(t, Options{})
	release := make(chan struct{})
	gone := make(chan struct{}, 1)
	b := startBackend(t, "b", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/stream" {
			_, _ = io.WriteString(w, "ok")
			return
		}
		_, _ = io.WriteString(w, "first")
		w.(http.Flusher).Flush()
		<-release
		for range 1000 {
			if _, err := w.Write(make([]byte, 4096)); err != nil {
				gone <- struct{}{}
				return
			}
			w.(http.Flusher).Flush()
		}
	}))
	l.update(ingress.Input{Ingresses: []ingress.Ingress{simpleIngress("i", "app.example", "s", nil)},
		Endpoints: endpoints(map[string][]*backend{"s": {b}})})
	c, br := l.rawClient()
	_, err := io.WriteString(c, "GET /stream HTTP/1.1\r\nHost: app.example\r\n\r\n")
	must(t, err)
	res, err := http.ReadResponse(br, &http.Request{Method: "GET"})
	must(t, err)
	first := make([]byte, 5)
	if _, err := io.ReadFull(res.Body, first); err != nil || string(first) != "first" {
		t.Fatalf("start of the stream: %q %v", first, err)
	}
	_ = c.Close()
	close(release)
	select {
	case <-gone:
	case <-time.After(15 * time.Second):
		t.Fatal("the backend kept streaming to a client that had gone")
	}
	if code, _ := l.get(l.client(clientOpts{}), "http://app.example/"); code != 200 {
		t.Errorf("next request: %d", code)
	}
}

// A backend that closes the connection in the middle of its response: the client
// does not get it as if complete, and the next request gets a new
// backend connection.
func TestFastPathBackendCloses(t *testing.T) {
	l := newLab(t, Options{})
	b := startRawBackend(t, func(n int, r *http.Request) (string, bool) {
		if r.URL.Path == "/cut" {
			return "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial", true
		}
		return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false
	})
	l.update(ingress.Input{Ingresses: []ingress.Ingress{simpleIngress("i", "app.example", "s", nil)}, Endpoints: rawEndpoints("s", b)})
	c, br := l.rawClient()
	_, err := io.WriteString(c, "GET /cut HTTP/1.1\r\nHost: app.example\r\n\r\n")
	must(t, err)
	// As from net/http: a short cut response is not sent at all (its head waits
	// with the body's start), a longer one ends early.
	if res, err := http.ReadResponse(br, &http.Request{Method: "GET"}); err == nil {
		if _, err := io.ReadAll(res.Body); err == nil {
			t.Error("a response the backend cut ended cleanly at the client")
		}
	}
	c2, br2 := l.rawClient()
	_, err = io.WriteString(c2, "GET /fine HTTP/1.1\r\nHost: app.example\r\n\r\n")
	must(t, err)
	if res, body := readResponse(t, br2, "GET"); res.StatusCode != 200 || body != "ok" {
		t.Errorf("after the cut: %d %q", res.StatusCode, body)
	}
	if n := b.conns.Load(); n != 2 {
		t.Errorf("%d backend connections, want 2 (the cut one is not reused)", n)
	}
}

// HTTP/1.1 over TLS takes the fast path after the handshake: pipelined GET and HEAD
// are answered in order with the certificate chosen by SNI and reach the backend as
// https on port 443; a request with a body on the same connection goes to net/http
// with the TLS state (still https), and so does the one after it.
func TestFastPathTLS(t *testing.T) {
	l := newLab(t, Options{DefaultCertificate: mustCert(t, "default.example")})
	b := startBackend(t, "b", nil)
	ing := simpleIngress("i", "app.example", "s", nil)
	ing.TLS = []ingress.TLS{{Hosts: []string{"app.example"}, SecretName: "app-tls"}}
	l.update(ingress.Input{Ingresses: []ingress.Ingress{ing}, Endpoints: endpoints(map[string][]*backend{"s": {b}}),
		Certificates: map[ingress.SecretKey]*tls.Certificate{{Namespace: "web", Name: "app-tls"}: mustCert(t, "app.example")}})
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: freshIP(2).AsSlice()}, Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", netip.AddrPortFrom(l.ip, 443).String(),
		&tls.Config{ServerName: "app.example", NextProtos: []string{"http/1.1"}, InsecureSkipVerify: true}) //nolint:gosec // the test looks at the served certificate
	must(t, err)
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	st := c.ConnectionState()
	if st.NegotiatedProtocol != "http/1.1" || st.PeerCertificates[0].Subject.CommonName != "app.example" {
		t.Fatalf("negotiated %q with certificate %q, want http/1.1 with app.example", st.NegotiatedProtocol, st.PeerCertificates[0].Subject.CommonName)
	}
	br := bufio.NewReader(c)
	_, err = io.WriteString(c, "GET /one HTTP/1.1\r\nHost: app.example\r\n\r\n"+
		"HEAD /two HTTP/1.1\r\nHost: app.example\r\n\r\n"+
		"POST /three HTTP/1.1\r\nHost: app.example\r\nContent-Length: 3\r\n\r\nabc"+
		"GET /four HTTP/1.1\r\nHost: app.example\r\nConnection: close\r\n\r\n")
	must(t, err)
	for _, want := range []struct{ method, uri string }{{"GET", "/one"}, {"HEAD", "/two"}, {"POST", "/three"}, {"GET", "/four"}} {
		res, body := readResponse(t, br, want.method)
		if res.StatusCode != 200 {
			t.Fatalf("%s %s: %d", want.method, want.uri, res.StatusCode)
		}
		if want.method == "HEAD" {
			if body != "" {
				t.Errorf("HEAD answered with a body %q", body)
			}
			continue
		}
		for _, s := range []string{`"URI":"` + want.uri + `"`, `"X-Forwarded-Proto":["https"]`, `"X-Forwarded-Port":["443"]`} {
			if !strings.Contains(body, s) {
				t.Errorf("%s %s: backend saw %s, want %s in it", want.method, want.uri, body, s)
			}
		}
	}
	if n := l.counter("ironlb_ingress_requests_total", map[string]string{"ingress": "web/i", "code": "200"}); n != 4 {
		t.Errorf("requests_total counted %v requests, want 4", n)
	}
}
