package server

import (
	"bufio"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// checkSimple reads raw with readSimple and with http.ReadResponse and fails when
// readSimple accepted it but read anything differently; it reports whether readSimple
// accepted it.
func checkSimple(t *testing.T, raw string) bool {
	t.Helper()
	bc := &backendConn{br: bufio.NewReaderSize(strings.NewReader(raw), 16<<10)}
	_, _ = bc.br.Peek(1)
	got := bc.readSimple()
	if got == nil {
		if rest, _ := io.ReadAll(bc.br); string(rest) != raw {
			t.Fatalf("%q: refused but consumed %d bytes", raw, len(raw)-len(rest))
		}
		return false
	}
	gotBody, gotErr := io.ReadAll(got.Body)
	want, err := http.ReadResponse(bufio.NewReader(strings.NewReader(raw)), &http.Request{Method: "GET"})
	if err != nil {
		t.Fatalf("%q: readSimple accepted what http.ReadResponse refuses: %v", raw, err)
	}
	wantBody, wantErr := io.ReadAll(want.Body)
	if got.StatusCode != want.StatusCode || got.ContentLength != want.ContentLength || got.Close != want.Close ||
		!maps.EqualFunc(got.Header, want.Header, slices.Equal) || string(gotBody) != string(wantBody) || (gotErr == nil) != (wantErr == nil) {
		t.Fatalf("%q:\nreadSimple       %d %v len %d close %v body %q %v\nhttp.ReadResponse %d %v len %d close %v body %q %v", raw,
			got.StatusCode, got.Header, got.ContentLength, got.Close, gotBody, gotErr,
			want.StatusCode, want.Header, want.ContentLength, want.Close, wantBody, wantErr)
	}
	return true
}

// readSimple takes the common response and reads it as http.ReadResponse; what it
// leaves (framing other than one Content-Length, hop-by-hop fields, statuses without
// a body, anything net/http might read differently) it leaves unread.
func TestReadSimple(t *testing.T) {
	for _, tc := range []struct {
		raw    string
		simple bool
	}{
		{"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello", true},
		{"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", true},
		{"HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nok", true},
		{"HTTP/1.1 200 OK\r\nset-cookie: a=1\r\nSet-Cookie: b=2\r\nx-lower: v\r\nX-Pad:  \t spaced \t\r\nX-Empty:\r\nContent-Length: 007\r\n\r\n1234567", true},
		{"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", true}, // the body ends early: ErrUnexpectedEOF
		{"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n", true},
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", false},
		{"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", false},
		{"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok", false},
		{"HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok", false},
		{"HTTP/1.1 200 OK\r\n\r\nuntil close", false},
		{"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", false},
		{"HTTP/1.1 204 No Content\r\n\r\n", false},
		{"HTTP/1.1 304 Not Modified\r\nContent-Length: 2\r\n\r\n", false},
		{"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n", false},
		{"HTTP/1.1 200 OK\r\nX-Folded: a\r\n b\r\nContent-Length: 0\r\n\r\n", false},
		{"HTTP/1.1 200 OK\r\nX-Bin: \x01\r\nContent-Length: 0\r\n\r\n", false},
		{"HTTP/1.1 200 OK\r\nX Space: 1\r\nContent-Length: 0\r\n\r\n", false},
		{"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n", false}, // the head is not all there
		{"HTTP/1.1 20x OK\r\nContent-Length: 0\r\n\r\n", false},
	} {
		if got := checkSimple(t, tc.raw); got != tc.simple {
			t.Errorf("%q: taken %v, want %v", tc.raw, got, tc.simple)
		}
	}
}

func FuzzReadSimple(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello",
		"HTTP/1.1 200 OK\r\nset-cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 500 x\r\nContent-Length: 3\r\nX-A:  b \r\n\r\nabc",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) { checkSimple(t, raw) })
}
