package server

import (
	"io"
	"maps"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ironlb/ironlb/ingress"
)

// pieceBackend answers the request for /<name> with the pieces of responses[name],
// written one by one with a pause between them, then closes the connection when the
// response is delimited by the close.
func pieceBackend(t *testing.T, responses map[string][]string) *rawBackend {
	t.Helper()
	return startRawBackend(t, func(_ int, r *http.Request) (string, bool) {
		pieces := responses[strings.TrimPrefix(r.URL.Path, "/")]
		if r.Method == http.MethodHead {
			pieces = headOnly(pieces)
		}
		return strings.Join(pieces, pause), len(pieces) == 0 || strings.Contains(pieces[0], "Connection: close")
	})
}

// headOnly cuts pieces after the head of the last response in them (the answer to
// HEAD has no body).
func headOnly(pieces []string) []string {
	all := strings.Join(pieces, "")
	end := strings.LastIndex(all, "HTTP/1.1 ")
	end += strings.Index(all[end:], "\r\n\r\n") + 4
	var out []string
	for _, p := range pieces {
		if end <= 0 {
			break
		}
		p = p[:min(len(p), end)]
		out = append(out, p)
		end -= len(p)
	}
	return out
}

// observed is what a client can tell of a response.
type observed struct {
	status   int
	header   http.Header // without Date
	chunked  bool
	length   int64
	body     string
	trailer  http.Header
	closed   bool // the proxy closed the connection after it
	readFail bool
	noHead   bool // the connection ended before a response head
}

// exchangeRaw sends one request head on a new connection and reads the answer.
func (l *lab) exchangeRaw(t *testing.T, head, method string) observed {
	t.Helper()
	c, br := l.rawClient()
	_, err := io.WriteString(c, head)
	must(t, err)
	res, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		return observed{noHead: true}
	}
	b, rerr := io.ReadAll(res.Body)
	o := observed{status: res.StatusCode, header: res.Header, chunked: slices.Contains(res.TransferEncoding, "chunked"),
		length: res.ContentLength, body: string(b), trailer: res.Trailer, readFail: rerr != nil}
	delete(o.header, "Date")
	if res.Close {
		o.closed = true
	} else {
		_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if _, err := br.ReadByte(); err == io.EOF {
			o.closed = true
		} else if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
			o.closed = true
		}
	}
	return o
}

// The fast path answers a client exactly as net/http's server does with the same
// proxy code behind it: framing (Content-Length, chunked, close-delimited), the
// Content-Type sniffed from the body's first 512 bytes when the backend sent none
// (also when they come in several pieces), an empty body of unknown length, trailers,
// 1xx, statuses without a body, repeated and non-canonical header names, HEAD. The
// net/http side is reached with the same request plus "Content-Length: 0", which
// the fast path leaves to net/http.
func TestFastPathAnswersAsNetHTTP(t *testing.T) {
	html := "<html><head><title>x</title></head><body>" + strings.Repeat("y", 600) + "</body></html>"
	responses := map[string][]string{
		"cl":            {"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"},
		"cl-sniff":      {"HTTP/1.1 200 OK\r\nContent-Length: " + strconv.Itoa(len(html)) + "\r\n\r\n" + html[:3], html[3:]},
		"cl-sniff-one":  {"HTTP/1.1 200 OK\r\nContent-Length: " + strconv.Itoa(len(html)) + "\r\n\r\n" + html},
		"chunked":       {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n" + html[:3] + "\r\n", "10\r\n" + html[3:19] + "\r\n0\r\n\r\n"},
		"chunked-typed": {"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"},
		"chunked-empty": {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
		"trailers":      {"HTTP/1.1 200 OK\r\nTrailer: X-Sum\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nbody\r\n0\r\nX-Sum: 42\r\n\r\n"},
		"close":         {"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end"},
		"close-empty":   {"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"},
		"no-content":    {"HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n"},
		"not-modified":  {"HTTP/1.1 304 Not Modified\r\nEtag: \"v1\"\r\nContent-Length: 10\r\n\r\n"},
		"zero":          {"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"},
		"odd-status":    {"HTTP/1.1 299 Fine Anyway\r\nContent-Length: 2\r\n\r\nok"},
		"repeated":      {"HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nset-cookie: b=2\r\nx-lower-case: v\r\nX-Spaces:   padded  \r\nContent-Length: 2\r\n\r\nok"},
		"hints":         {"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"},
		"cut":           {"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\nshort"},
		"event-stream":  {"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 12\r\n\r\ndata: one\n\n", "\n"},
	}
	l := newLab(t, Options{})
	be := pieceBackend(t, responses)
	l.update(ingress.Input{Ingresses: []ingress.Ingress{simpleIngress("i", "app.example", "s", nil)},
		Endpoints: rawEndpoints("s", be)})
	names := make([]string, 0, len(responses))
	for name := range responses {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		for _, method := range []string{"GET", "HEAD"} {
			head := method + " /" + name + " HTTP/1.1\r\nHost: app.example\r\n"
			fast := l.exchangeRaw(t, head+"\r\n", method)
			std := l.exchangeRaw(t, head+"Content-Length: 0\r\n\r\n", method)
			if !equalObserved(fast, std) {
				t.Errorf("%s /%s:\nfast path %+v\nnet/http  %+v", method, name, fast, std)
			}
		}
	}
	// The sniffed type is the one of the whole start of the body, not of its first
	// piece.
	if got := l.exchangeRaw(t, "GET /cl-sniff HTTP/1.1\r\nHost: app.example\r\n\r\n", "GET").header.Get("Content-Type"); got != "text/html; charset=utf-8" {
		t.Errorf("sniffed Content-Type %q, want text/html; charset=utf-8", got)
	}
}

func equalObserved(a, b observed) bool {
	eq := func(x, y http.Header) bool {
		return len(x) == len(y) && !slices.ContainsFunc(slices.Collect(maps.Keys(x)), func(k string) bool { return !slices.Equal(x[k], y[k]) })
	}
	return a.status == b.status && a.chunked == b.chunked && a.length == b.length && a.body == b.body &&
		a.closed == b.closed && a.readFail == b.readFail && a.noHead == b.noHead && eq(a.header, b.header) && eq(a.trailer, b.trailer)
}
