package server

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/textproto"
)

// readResponse reads the next response head from the backend, as http.ReadResponse
// does for req. The common response (HTTP/1.1, a status with a body, a
// Content-Length, no hop-by-hop header, the whole head in the first read) is parsed
// by readSimple with two allocations (the head's text and one slice of values) into
// the connection's own Response and header map, where http.ReadResponse makes about
// a dozen; every other one, and a HEAD's, is left to http.ReadResponse, which reads
// it from the start.
func (bc *backendConn) readResponse(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodHead {
		if _, err := bc.br.Peek(1); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF // as http.ReadResponse says it
			}
			return nil, err
		}
		if res := bc.readSimple(); res != nil {
			return res, nil
		}
	}
	return http.ReadResponse(bc.br, req)
}

// maxSimpleFields bounds the header fields readSimple takes.
const maxSimpleFields = 64

// readSimple parses and consumes the buffered response head if it is simple (see
// readResponse), else returns nil and consumes nothing. What it accepts, it reads as
// net/http does; what net/http might read differently (a folded line, a name or value
// with bytes outside visible ASCII, a status without a body, framing other than one
// Content-Length) it does not accept.
func (bc *backendConn) readSimple() *http.Response {
	buf, _ := bc.br.Peek(bc.br.Buffered())
	end := bytes.Index(buf, []byte("\r\n\r\n"))
	if end < 0 || !bytes.HasPrefix(buf, []byte("HTTP/1.1 ")) {
		return nil
	}
	line := buf[len("HTTP/1.1 "):]
	eol := bytes.IndexByte(line, '\r')
	if eol < 3 || (eol > 3 && line[3] != ' ') || eol+1 >= len(line) || line[eol+1] != '\n' {
		return nil
	}
	code := 0
	for _, c := range line[:3] {
		if c < '0' || c > '9' {
			return nil
		}
		code = code*10 + int(c-'0')
	}
	if code < 200 || code > 599 || !bodyAllowed(code) {
		return nil
	}
	for _, c := range line[:eol] {
		if c < ' ' && c != '\t' || c == 0x7f {
			return nil
		}
	}
	// One pass to check the fields and count them, before anything is allocated.
	start := len("HTTP/1.1 ") + eol + 2
	if start > end+2 {
		return nil
	}
	fields, length := 0, int64(-1)
	for p := start; p < end+2; {
		i := bytes.IndexByte(buf[p:end+2], '\r')
		name, value, ok := splitField(buf[p : p+i])
		if !ok || buf[p+i+1] != '\n' {
			return nil
		}
		switch string(name) { // no allocation: compared in place
		case "Content-Length":
			if length >= 0 || len(value) == 0 || len(value) > 18 {
				return nil
			}
			n := int64(0)
			for _, c := range value {
				if c < '0' || c > '9' {
					return nil
				}
				n = n*10 + int64(c-'0')
			}
			length = n
		case "Connection", "Proxy-Connection", "Keep-Alive", "Transfer-Encoding", "Te", "Trailer",
			"Upgrade", "Proxy-Authenticate", "Proxy-Authorization":
			return nil
		}
		if fields++; fields > maxSimpleFields {
			return nil
		}
		p += i + 2
	}
	if length < 0 {
		return nil
	}
	head := string(buf[start : end+2])
	values := make([]string, fields)
	if bc.hdr == nil {
		bc.hdr = make(http.Header, fields)
	} else {
		clear(bc.hdr)
	}
	h := bc.hdr
	for p, i := 0, 0; p < len(head); i++ {
		e := p + indexCR(head[p:])
		name, value := splitFieldString(head[p:e])
		values[i] = value
		if vv, ok := h[name]; ok {
			h[name] = append(vv, value)
		} else {
			h[name] = values[i : i+1 : i+1]
		}
		p = e + 2
	}
	_, _ = bc.br.Discard(end + 4)
	bc.length = lengthBody{br: bc.br, left: length}
	bc.res = http.Response{Status: string(line[:eol]), StatusCode: code, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, ContentLength: length, Body: &bc.length}
	if length == 0 {
		bc.res.Body = http.NoBody
	}
	return &bc.res
}

// splitField splits a header line into its name, which must be of letters, digits
// and dashes, and its value without surrounding blanks, which must be of visible
// ASCII, blanks and tabs.
func splitField(line []byte) (name, value []byte, ok bool) {
	colon := bytes.IndexByte(line, ':')
	if colon <= 0 {
		return nil, nil, false
	}
	for _, c := range line[:colon] {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return nil, nil, false
		}
	}
	for _, c := range line[colon+1:] {
		if c < ' ' && c != '\t' || c >= 0x7f {
			return nil, nil, false
		}
	}
	name = line[:colon]
	if !isCanonical(name) {
		name = []byte(textproto.CanonicalMIMEHeaderKey(string(name)))
	}
	return name, bytes.Trim(line[colon+1:], " \t"), true
}

func isCanonical(name []byte) bool {
	upper := true
	for _, c := range name {
		if upper && c >= 'a' && c <= 'z' || !upper && c >= 'A' && c <= 'Z' {
			return false
		}
		upper = c == '-'
	}
	return true
}

// splitFieldString is splitField of a line already checked, on the head's text.
func splitFieldString(line string) (name, value string) {
	colon := 0
	for line[colon] != ':' {
		colon++
	}
	name = line[:colon]
	if !isCanonical([]byte(name)) {
		name = textproto.CanonicalMIMEHeaderKey(name)
	}
	value = line[colon+1:]
	for len(value) > 0 && (value[0] == ' ' || value[0] == '\t') {
		value = value[1:]
	}
	for len(value) > 0 && (value[len(value)-1] == ' ' || value[len(value)-1] == '\t') {
		value = value[:len(value)-1]
	}
	return name, value
}

func indexCR(s string) int {
	for i := 0; i < len(s); i++ {
		if s[i] == '\r' {
			return i
		}
	}
	return len(s)
}

// lengthBody is the body of a response with a Content-Length, read as net/http's:
// io.EOF with the last byte, io.ErrUnexpectedEOF when the connection ends before.
type lengthBody struct {
	br   *bufio.Reader
	left int64
}

func (b *lengthBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.br.Read(p)
	b.left -= int64(n)
	switch {
	case err == io.EOF && b.left > 0:
		err = io.ErrUnexpectedEOF
	case b.left == 0:
		err = io.EOF
	}
	return n, err
}

func (b *lengthBody) Close() error { return nil }
