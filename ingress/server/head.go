package server

import (
	"net/textproto"
	"net/url"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// headerField is one request header line as the client sent it, the name in canonical
// form (what net/http would key it by), the value without surrounding blanks.
type headerField struct{ name, value string }

// reqHead is a request head the fast path serves itself.
type reqHead struct {
	method string // GET or HEAD
	target string // origin-form request-target, as sent
	url    *url.URL
	host   string
	fields []headerField // every field but Host, in order
	close  bool          // Connection: close
}

// parseHead parses raw, an HTTP/1.1 request head through its empty line, into h (whose
// fields slice is reused). It accepts only what the fast path may serve and what
// net/http would read the same way: GET or HEAD, an origin-form target of visible
// ASCII, HTTP/1.1, CRLF line ends, valid field names and values, exactly one valid
// Host, no Content-Length, Transfer-Encoding, Upgrade or Expect, no obsolete line
// folding. Anything else (false) is left to net/http, which answers it as it always
// did (a 400 for what is malformed). It allocates the URL, and the names sent in
// non-canonical case.
func parseHead(raw string, h *reqHead) bool {
	*h = reqHead{fields: h.fields[:0]}
	line, rest, ok := strings.Cut(raw, "\r\n")
	if !ok {
		return false
	}
	method, line, ok := strings.Cut(line, " ")
	if !ok || (method != "GET" && method != "HEAD") {
		return false
	}
	target, proto, ok := strings.Cut(line, " ")
	if !ok || proto != "HTTP/1.1" || target == "" || target[0] != '/' {
		return false
	}
	for i := 0; i < len(target); i++ {
		if target[i] <= ' ' || target[i] >= 0x7f {
			return false
		}
	}
	h.method, h.target = method, target
	hosts := 0
	for {
		line, rest, ok = strings.Cut(rest, "\r\n")
		if !ok {
			return false
		}
		if line == "" {
			break
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok || !httpguts.ValidHeaderFieldName(name) {
			return false // also a folded line, which starts with a blank
		}
		value = strings.Trim(value, " \t")
		if !httpguts.ValidHeaderFieldValue(value) {
			return false
		}
		name = textproto.CanonicalMIMEHeaderKey(name)
		switch name {
		case "Host":
			hosts++
			h.host = value
			continue
		case "Content-Length", "Transfer-Encoding", "Upgrade", "Expect":
			return false
		case "Connection":
			if httpguts.HeaderValuesContainsToken([]string{value}, "close") {
				h.close = true
			}
		}
		h.fields = append(h.fields, headerField{name, value})
	}
	if rest != "" || hosts != 1 || !httpguts.ValidHostHeader(h.host) {
		return false
	}
	u, err := url.ParseRequestURI(target)
	h.url = u
	return err == nil
}
