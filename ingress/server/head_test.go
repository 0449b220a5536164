package server

import (
	"bufio"
	"net/http"
	"strings"
	"testing"

	"golang.org/x/net/http/httpguts"
)

func TestParseHead(t *testing.T) {
	for _, tc := range []struct {
		raw   string
		fast  bool
		host  string
		close bool
	}{
		{raw: "GET /a?b=c HTTP/1.1\r\nHost: app.example\r\nX-A: 1\r\n\r\n", fast: true, host: "app.example"},
		{raw: "HEAD / HTTP/1.1\r\nhost:  app.example:80 \r\nconnection: close\r\n\r\n", fast: true, host: "app.example:80", close: true},
		{raw: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\n"},            // a body: net/http
		{raw: "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"},             // any length: net/http
		{raw: "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"},    // body
		{raw: "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n"},            // WebSocket
		{raw: "GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n"},          // Expect
		{raw: "GET / HTTP/1.0\r\nHost: a\r\n\r\n"},                                  // HTTP/1.0 keep-alive rules
		{raw: "PRI * HTTP/2.0\r\n\r\n"},                                             // h2c preface
		{raw: "GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n"},                          // absolute form
		{raw: "GET / HTTP/1.1\r\n\r\n"},                                             // no Host: 400 by net/http
		{raw: "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"},                       // two
		{raw: "GET / HTTP/1.1\r\nHost: a b\r\n\r\n"},                                // invalid Host
		{raw: "GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n folded\r\n\r\n"},             // obs-fold
		{raw: "GET / HTTP/1.1\r\nHost: a\r\nX A: 1\r\n\r\n"},                        // bad name
		{raw: "GET / HTTP/1.1\r\nHost: a\r\nX-A : 1\r\n\r\n"},                       // blank before colon
		{raw: "GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\x00\r\n\r\n"},                    // control character
		{raw: "GET / HTTP/1.1\nHost: a\r\n\r\n"},                                    // bare LF
		{raw: "GET /\xff HTTP/1.1\r\nHost: a\r\n\r\n"},                              // not ASCII
		{raw: "GET  / HTTP/1.1\r\nHost: a\r\n\r\n"},                                 // two blanks
		{raw: "GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"}, // more than a head
	} {
		var h reqHead
		got := parseHead(tc.raw, &h)
		if got != tc.fast || (got && (h.host != tc.host || h.close != tc.close)) {
			t.Errorf("%q: fast %v host %q close %v; want %v %q %v", tc.raw, got, h.host, h.close, tc.fast, tc.host, tc.close)
		}
	}
}

// FuzzParseHead: what the fast path reads itself, net/http reads the same way (it
// would serve the request, with the same method, target, Host and fields); anything
// else is only ever refused, never a panic.
func FuzzParseHead(f *testing.F) {
	f.Add("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	f.Add("HEAD /x?y HTTP/1.1\r\nHost: a:80\r\nconnection: close\r\nx-a:  b \r\nX-A: c\r\n\r\n")
	f.Add("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n")
	f.Fuzz(func(t *testing.T, raw string) {
		var h reqHead
		if !parseHead(raw, &h) {
			return
		}
		r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
		if err != nil {
			t.Fatalf("parseHead took %q, net/http refuses it: %v", raw, err)
		}
		if r.Method != h.method || r.RequestURI != h.target || r.Host != h.host || r.ContentLength != 0 || r.Close != h.close {
			t.Fatalf("%q: net/http reads %s %s host %q length %d close %v; parseHead %s %s %q %v",
				raw, r.Method, r.RequestURI, r.Host, r.ContentLength, r.Close, h.method, h.target, h.host, h.close)
		}
		got := http.Header{}
		for _, f := range h.fields {
			got.Add(f.name, f.value)
		}
		for k, vv := range r.Header {
			if !httpguts.ValidHeaderFieldName(k) || strings.Join(got[k], "\n") != strings.Join(vv, "\n") {
				t.Fatalf("%q: field %s: net/http %q, parseHead %q", raw, k, vv, got[k])
			}
			for _, v := range vv {
				if !httpguts.ValidHeaderFieldValue(v) {
					t.Fatalf("%q: net/http's server refuses the value %q", raw, v)
				}
			}
		}
		if len(got) != len(r.Header) {
			t.Fatalf("%q: fields %v, net/http %v", raw, got, r.Header)
		}
	})
}
