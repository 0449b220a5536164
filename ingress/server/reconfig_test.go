package server

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/websocket"

	"github.com/ironlb/ironlb/ingress"
)

// wsEcho answers every WebSocket message with "<name>:<message>".
func wsEcho(name string) http.Handler {
	return websocket.Server{Handler: func(ws *websocket.Conn) {
		for {
			var msg string
			if err := websocket.Message.Receive(ws, &msg); err != nil {
				return
			}
			if err := websocket.Message.Send(ws, name+":"+msg); err != nil {
				return
			}
		}
	}}
}

// TestReconfigurationKeepsConnections: 100 table swaps that change routes, the
// endpoints of every Service (including removing the endpoint a WebSocket and a slow
// request are attached to) and the TLS certificate. Through all of them: one WebSocket
// keeps echoing, one plain and one TLS keep-alive connection keep serving, a request in
// flight completes, new TLS handshakes get the newest certificate, and a concurrent
// request loop sees no error.
func TestReconfigurationKeepsConnections(t *testing.T) {
	l := newLab(t, Options{})
	wsA, wsB := startBackend(t, "wsA", wsEcho("wsA")), startBackend(t, "wsB", wsEcho("wsB"))
	webA, webB := startBackend(t, "webA", nil), startBackend(t, "webB", nil)
	slowGot, slowRelease := make(chan struct{}), make(chan struct{})
	slow := startBackend(t, "slow", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(slowGot)
		<-slowRelease
		_, _ = io.WriteString(w, "slow done")
	}))

	table := func(i int, ws, web []*backend, withSlow bool) (ingress.Input, *tls.Certificate) {
		cert := mustCert(t, "tls.example", fmt.Sprintf("gen%d.invalid", i))
		paths := []ingress.Path{prefixPath("/", "web"), prefixPath("/chat", "ws"), prefixPath("/slow", "slow")}
		for k := range i % 7 {
			paths = append(paths, prefixPath(fmt.Sprintf("/extra/%d/%d", i, k), "web"))
		}
		ing := ingress.Ingress{Namespace: "web", Name: "app", Created: created,
			Rules: []ingress.Rule{{Host: "app.example", Paths: paths}, {Host: "tls.example", Paths: paths}},
			TLS:   []ingress.TLS{{Hosts: []string{"tls.example"}, SecretName: "tls"}}}
		eps := map[string][]*backend{"ws": ws, "web": web}
		if withSlow {
			eps["slow"] = []*backend{slow}
		}
		return ingress.Input{Ingresses: []ingress.Ingress{ing}, Endpoints: endpoints(eps),
			Certificates: map[ingress.SecretKey]*tls.Certificate{{Namespace: "web", Name: "tls"}: cert}}, cert
	}
	in, _ := table(0, []*backend{wsA}, []*backend{webA}, true)
	l.update(in)

	// The WebSocket, attached to wsA.
	raw, err := net.Dial("tcp", netip.AddrPortFrom(l.ip, 80).String())
	must(t, err)
	cfg, err := websocket.NewConfig("ws://app.example/chat", "http://app.example/")
	must(t, err)
	ws, err := websocket.NewClient(cfg, raw)
	must(t, err)
	defer ws.Close()
	echoWS := func(msg string) string {
		t.Helper()
		must(t, ws.SetDeadline(time.Now().Add(10*time.Second)))
		must(t, websocket.Message.Send(ws, msg))
		var reply string
		must(t, websocket.Message.Receive(ws, &reply))
		return reply
	}
	if got := echoWS("hello"); got != "wsA:hello" {
		t.Fatalf("WebSocket echo %q", got)
	}

	// Keep-alive clients, plain HTTP/1.1 and TLS (HTTP/2), each allowed one connection.
	var plainConns, tlsConns atomic.Int64
	plain := l.client(clientOpts{conns: &plainConns})
	plain.Transport.(*http.Transport).ForceAttemptHTTP2 = false
	secure := l.client(clientOpts{conns: &tlsConns, serverName: "tls.example"})

	// A request in flight to the slow endpoint.
	slowDone := make(chan string, 1)
	go func() {
		res, err := l.client(clientOpts{}).Get("http://app.example/slow")
		if err != nil {
			slowDone <- err.Error()
			return
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		slowDone <- fmt.Sprintf("%d %s", res.StatusCode, b)
	}()
	<-slowGot

	// Load during the swaps, bounded in count; every answer must be a 200.
	stop := make(chan struct{})
	var loadWG sync.WaitGroup
	var loadOK, loadBad atomic.Int64
	loadWG.Add(1)
	go func() {
		defer loadWG.Done()
		c := l.client(clientOpts{})
		for range 20000 {
			select {
			case <-stop:
				return
			default:
			}
			res, err := c.Get("http://app.example/")
			if err != nil {
				loadBad.Add(1)
				continue
			}
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				loadOK.Add(1)
			} else {
				loadBad.Add(1)
			}
		}
	}()

	for i := 1; i <= 100; i++ {
		ws := [][]*backend{{wsB}, {wsA, wsB}}[i%2] // wsA, the WebSocket's endpoint, leaves and comes back
		web := [][]*backend{{webB}, {webA, webB}, {webA}}[i%3]
		in, cert := table(i, ws, web, false) // the slow endpoint is gone from the first swap on
		l.update(in)

		if got, want := echoWS(fmt.Sprint(i)), fmt.Sprintf("wsA:%d", i); got != want {
			t.Fatalf("swap %d: WebSocket echo %q, want %q", i, got, want)
		}
		if code, got := l.get(plain, "http://app.example/"); code != http.StatusOK || !slices.Contains([]string{"webA", "webB"}, got) {
			t.Fatalf("swap %d: keep-alive request %d from %q", i, code, got)
		}
		res, _ := l.do(secure, "GET", "https://tls.example/", nil, nil)
		if res.StatusCode != http.StatusOK {
			t.Fatalf("swap %d: TLS keep-alive request %d", i, res.StatusCode)
		}
		if i%10 == 0 {
			// A new handshake is answered with the certificate of the newest table.
			fresh := l.client(clientOpts{serverName: "tls.example"})
			res, _ := l.do(fresh, "GET", "https://tls.example/", nil, nil)
			if got := res.TLS.PeerCertificates[0].DNSNames; !slices.Contains(got, cert.Leaf.DNSNames[1]) {
				t.Fatalf("swap %d: new handshake got certificate %v, want %v", i, got, cert.Leaf.DNSNames)
			}
		}
	}
	close(slowRelease)
	if got := <-slowDone; got != "200 slow done" {
		t.Errorf("request in flight across 100 swaps: %q, want 200 slow done", got)
	}
	close(stop)
	loadWG.Wait()
	if plainConns.Load() != 1 || tlsConns.Load() != 1 {
		t.Errorf("keep-alive clients opened %d plain and %d TLS connections, want 1 each", plainConns.Load(), tlsConns.Load())
	}
	if loadBad.Load() != 0 || loadOK.Load() == 0 {
		t.Errorf("requests during the swaps: %d ok, %d failed; want none failed", loadOK.Load(), loadBad.Load())
	}
	t.Logf("%d requests answered 200 during 100 swaps", loadOK.Load())
	if n := l.counter("ironlb_ingress_reloads_total", nil); n != 101 {
		t.Errorf("reloads_total = %v, want 101", n)
	}
}

// TestShutdownDrains: when Serve's context ends, a request in flight completes and
// then Serve returns; the listener is closed.
func TestShutdownDrains(t *testing.T) {
	needNetns(t)
	got, release := make(chan struct{}), make(chan struct{})
	slow := startBackend(t, "slow", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(got)
		<-release
		_, _ = io.WriteString(w, "done")
	}))
	srv, err := New(Options{ShutdownTimeout: 30 * time.Second})
	must(t, err)
	tab, _ := ingress.Build(ingress.Input{Ingresses: []ingress.Ingress{simpleIngress("i", "app.example", "slow", nil)},
		Endpoints: endpoints(map[string][]*backend{"slow": {slow}})})
	srv.Update(tab)
	addr := netip.AddrPortFrom(freshIP(0), 80)
	ln := listen(t, addr)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln, nil) }()

	answer := make(chan string, 1)
	go func() {
		req, _ := http.NewRequest("GET", "http://"+addr.String()+"/", nil)
		req.Host = "app.example"
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			answer <- err.Error()
			return
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		answer <- fmt.Sprintf("%d %s", res.StatusCode, b)
	}()
	<-got
	cancel()
	// Shutdown has begun once the listener refuses connections.
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", addr.String())
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("still accepting 10s after the context ended")
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case err := <-served:
		t.Fatalf("Serve returned (%v) with a request in flight", err)
	default:
	}
	close(release)
	if a := <-answer; a != "200 done" {
		t.Errorf("request in flight at shutdown: %q, want 200 done", a)
	}
	if err := <-served; err != nil {
		t.Errorf("Serve: %v", err)
	}
}
