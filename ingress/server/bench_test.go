package server

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/ironlb/ironlb/ingress"
)

// benchProxy measures requests through the proxy (or straight to the backend when
// direct) over real sockets in the test namespace: keep-alive clients in parallel,
// a backend answering a small body, routing on a 1000-host table.
func benchProxy(b *testing.B, direct, https bool) {
	l := newLab(b, Options{})
	body := strings.Repeat("x", 1024)
	be := startBackend(b, "b", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, body)
	}))
	ings := []ingress.Ingress{simpleIngress("app", "app.example", "b", nil)}
	for i := range 1000 {
		ings = append(ings, simpleIngress(fmt.Sprintf("filler%d", i), fmt.Sprintf("filler%d.example", i), "b", nil))
	}
	l.update(ingress.Input{Ingresses: ings, Endpoints: endpoints(map[string][]*backend{"b": {be}})})
	url := "http://app.example/api/items"
	if https {
		url = "https://app.example/api/items"
	}
	if direct {
		url = "http://" + be.addr.String() + "/api/items"
	}
	c := l.client(clientOpts{serverName: "app.example"})
	tr := c.Transport.(*http.Transport)
	tr.MaxIdleConnsPerHost = 64
	if direct {
		tr.DialContext = nil
	}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.ResetTimer()
	b.SetParallelism(8) // 8 × GOMAXPROCS concurrent keep-alive connections
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			res, err := c.Get(url)
			if err != nil {
				b.Error(err)
				return
			}
			n, _ := io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode != http.StatusOK || n != int64(len(body)) {
				b.Errorf("%d, %d bytes", res.StatusCode, n)
				return
			}
		}
	})
}

// BenchmarkProxyHTTP: client -> proxy (HTTP/1.1 keep-alive) -> backend (keep-alive pool).
func BenchmarkProxyHTTP(b *testing.B) { benchProxy(b, false, false) }

// BenchmarkProxyHTTPS: the same with TLS (HTTP/2) between client and proxy.
func BenchmarkProxyHTTPS(b *testing.B) { benchProxy(b, false, true) }

// BenchmarkDirect: the same client straight to the backend, the baseline the proxy
// adds its cost to.
func BenchmarkDirect(b *testing.B) { benchProxy(b, true, false) }

// BenchmarkFastPath: keep-alive clients writing raw GET requests to the proxy's fast
// path and reading the answers with a minimal parser, a backend answering from
// net/http's request parser with a fixed response (what the lab's pod servers send):
// the figures are mostly the proxy's own.
func BenchmarkFastPath(b *testing.B) {
	l := newLab(b, Options{})
	const answer = "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nDate: Thu, 26 Nov 2026 17:00:00 GMT\r\nContent-Length: 30\r\n\r\npod-s1-0 198.18.2.1:43210 ok\n\n"
	be := startRawBackend(b, func(int, *http.Request) (string, bool) { return answer, false })
	l.update(ingress.Input{Ingresses: []ingress.Ingress{simpleIngress("app", "app.example", "s", nil)}, Endpoints: rawEndpoints("s", be)})
	req := []byte("GET /api/items HTTP/1.1\r\nHost: app.example\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
	b.ReportAllocs()
	b.ResetTimer()
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		c, err := net.Dial("tcp", netip.AddrPortFrom(l.ip, 80).String())
		if err != nil {
			b.Error(err)
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		for pb.Next() {
			if _, err := c.Write(req); err != nil {
				b.Error(err)
				return
			}
			n := -1
			for {
				line, err := br.ReadSlice('\n')
				if err != nil {
					b.Error(err)
					return
				}
				if v, ok := bytes.CutPrefix(line, []byte("Content-Length: ")); ok {
					n, _ = strconv.Atoi(string(bytes.TrimSpace(v)))
				}
				if len(line) == 2 {
					break
				}
			}
			if _, err := br.Discard(n); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
