package server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"k8s.io/klog/v2"

	"github.com/ironlb/ironlb/ingress"
)

// The fast path serves HTTP/1.1 connections (plain, and TLS ones that chose http/1.1
// by ALPN) in front of net/http: one goroutine per connection reads each request
// head itself (parseHead) and, for a request the direct path can take (GET or HEAD,
// no body, no upgrade, routed to a plain-HTTP backend without redirect, denial or
// canary), forwards it and writes the response to the connection itself. net/http's
// server costs per request what the direct path no longer costs: a request with its
// header map and context, a goroutine hand-off, and a background read of the client
// connection (to see it close) that finds nothing and has to be cancelled. The first
// request the fast path does not take, and every one after it on that connection, is
// served by net/http: the connection, with the bytes already read, is handed to an
// http.Server through a listener it serves, so those requests behave exactly as
// without the fast path (including the 400 and 431 answers to what is malformed or too
// large, and h2c).
//
// A client that goes away while its request is with the backend is noticed by a read
// of the client connection started only once a request has taken watchAfter: the
// common fast request never pays for it.
const watchAfter = 250 * time.Millisecond

// headBufSize bounds the request heads the fast path reads itself; a longer one goes
// to net/http with what was read (up to Options.MaxHeaderBytes, then 431).
const headBufSize = 8 << 10

// tlsStateKey is the context key of the TLS state of a connection handed to net/http
// after its handshake, which net/http sees as plain (r.TLS is restored from it).
type tlsStateKey struct{}

// handoffListener gives connections to an http.Server.
type handoffListener struct {
	addr  net.Addr
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newHandoffListener(addr net.Addr) *handoffListener {
	return &handoffListener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *handoffListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *handoffListener) Addr() net.Addr { return l.addr }

// give hands c to the server; false once the listener is closed.
func (l *handoffListener) give(c net.Conn) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.done:
		return false
	}
}

// handedConn is a connection handed to net/http: the bytes the fast path read come
// first.
type handedConn struct {
	net.Conn
	br  *bufio.Reader // nil once drained
	tls *tls.ConnectionState
}

func (c *handedConn) Read(p []byte) (int, error) {
	if c.br != nil {
		if c.br.Buffered() > 0 {
			return c.br.Read(p)
		}
		c.br = nil
	}
	return c.Conn.Read(p)
}

// connContext gives requests of a handed TLS connection its TLS state.
func connContext(ctx context.Context, c net.Conn) context.Context {
	if hc, ok := c.(*handedConn); ok && hc.tls != nil {
		return context.WithValue(ctx, tlsStateKey{}, hc.tls)
	}
	return ctx
}

// Connection states of the fast path, as net/http's idle and active.
const (
	connIdle int32 = iota
	connActive
	connClosed
)

// front accepts the connections of one listener for the fast path.
type front struct {
	s        *Server
	ln       net.Listener
	handoff  *handoffListener
	tls      *tls.Config // nil for plain HTTP
	ctx      context.Context
	mu       sync.Mutex
	conns    map[*fastConn]struct{}
	stopping atomic.Bool
	wg       sync.WaitGroup // accept loop and connections
}

// Connections do not end with Serve's context but with the shutdown that follows.
func (s *Server) newFront(ln net.Listener, tlsConf *tls.Config) *front {
	return &front{s: s, ln: ln, handoff: newHandoffListener(ln.Addr()), tls: tlsConf, ctx: context.Background(), conns: map[*fastConn]struct{}{}}
}

// serve accepts until the listener is closed.
func (f *front) serve() error {
	var delay time.Duration
	for {
		nc, err := f.ln.Accept()
		if err != nil {
			if f.stopping.Load() || errors.Is(err, net.ErrClosed) {
				return http.ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) {
				// Out of file descriptors and the like: back off as net/http does.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			f.conn(nc)
		}()
	}
}

// conn serves one accepted connection: TLS handshake first (an h2 connection goes to
// net/http as it is), then the fast path.
func (f *front) conn(nc net.Conn) {
	var cs *tls.ConnectionState
	if f.tls != nil {
		tc := tls.Server(nc, f.tls)
		_ = nc.SetDeadline(time.Now().Add(readHeaderTimeout))
		if err := tc.HandshakeContext(f.ctx); err != nil {
			klog.V(4).InfoS("TLS handshake failed", "client", nc.RemoteAddr(), "err", err)
			_ = nc.Close()
			return
		}
		_ = nc.SetDeadline(time.Time{})
		st := tc.ConnectionState()
		if st.NegotiatedProtocol == "h2" {
			if !f.handoff.give(tc) {
				_ = tc.Close()
			}
			return
		}
		cs, nc = &st, tc
	}
	fc := f.s.newFastConn(f, nc, cs)
	if !f.track(fc, true) {
		_ = nc.Close()
		return
	}
	handOff := fc.serve()
	f.track(fc, false)
	fc.cancel()
	if handOff {
		_ = nc.SetReadDeadline(time.Time{})
		if f.handoff.give(&handedConn{Conn: nc, br: fc.br, tls: cs}) {
			return
		}
	}
	_ = nc.Close()
}

func (f *front) track(fc *fastConn, add bool) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if add {
		if f.stopping.Load() {
			return false
		}
		f.conns[fc] = struct{}{}
	} else {
		delete(f.conns, fc)
	}
	return true
}

// close stops accepting: the listener is closed, and so is the hand-off listener
// once the http.Server is shut down.
func (f *front) close() {
	f.stopping.Store(true)
	_ = f.ln.Close()
}

// shutdown closes idle fast-path connections until none is left (a busy one closes
// after its response) or ctx ends, as http.Server.Shutdown.
func (f *front) shutdown(ctx context.Context) error {
	f.close()
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		f.mu.Lock()
		for fc := range f.conns {
			if fc.state.CompareAndSwap(connIdle, connClosed) {
				_ = fc.nc.Close()
			}
		}
		n := len(f.conns)
		f.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// fastConn is one client connection on the fast path.
type fastConn struct {
	s        *Server
	f        *front
	nc       net.Conn
	br       *bufio.Reader
	bw       *bufio.Writer
	state    atomic.Int32
	ctx      context.Context // ends when the client is seen gone or the connection ends
	cancel   context.CancelFunc
	client   client // peer, scheme and local port; host per request
	deadline time.Time
	head     reqHead
	w        fastWriter
	rec      statusRecorder

	watchTimer *time.Timer
	wmu        sync.Mutex
	armed      bool
	wdone      chan struct{}
	backend    net.Conn // the backend connection being guarded (goneGuard)
}

const readHeaderTimeout = 60 * time.Second

func (s *Server) newFastConn(f *front, nc net.Conn, cs *tls.ConnectionState) *fastConn {
	fc := &fastConn{s: s, f: f, nc: nc, br: bufio.NewReaderSize(nc, headBufSize), bw: bufio.NewWriterSize(nc, 4<<10)}
	fc.ctx, fc.cancel = context.WithCancel(f.ctx)
	peer := netip.Addr{}
	if a, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
		peer = a.AddrPort().Addr().Unmap()
	}
	fc.client = client{ip: peer, xff: peer.String(), proto: "http"}
	fc.client.real = fc.client.xff
	if cs != nil {
		fc.client.proto = "https"
	}
	if a, ok := nc.LocalAddr().(*net.TCPAddr); ok {
		fc.client.port = strconv.Itoa(a.Port)
	}
	fc.w.bw = fc.bw
	fc.watchTimer = time.AfterFunc(time.Hour, fc.watch)
	fc.watchTimer.Stop()
	return fc
}

var errHandOff = errors.New("left to net/http")

// serve runs the fast path until the connection ends (false) or a request is left to
// net/http (true: the unread bytes are in fc.br).
func (fc *fastConn) serve() (handOff bool) {
	defer fc.watchTimer.Stop()
	trusted := len(fc.s.opts.TrustedProxies) > 0 && trustedPeer(fc.s.opts.TrustedProxies, fc.client.ip)
	timeout := readHeaderTimeout
	for {
		if !fc.readWithin(timeout) {
			return false
		}
		timeout = fc.s.opts.IdleTimeout
		raw, err := fc.readHead()
		if err != nil {
			return fc.br.Buffered() > 0 // what net/http makes of it (400, 431, h2c, ...)
		}
		if !fc.state.CompareAndSwap(connIdle, connActive) {
			return false // shut down while idle
		}
		if trusted || !parseHead(raw, &fc.head) {
			return true
		}
		keep, served := fc.serveOne(len(raw))
		if !served {
			return true
		}
		if !keep || fc.f.stopping.Load() || !fc.state.CompareAndSwap(connActive, connIdle) {
			return false
		}
	}
}

// readWithin sets the read deadline d from now unless one at least 15/16 of d away is
// set (moving a deadline costs a timer update); false when the connection failed.
func (fc *fastConn) readWithin(d time.Duration) bool {
	now := time.Now()
	if fc.deadline.Sub(now) >= d-d/16 {
		return true
	}
	fc.deadline = now.Add(d)
	return fc.nc.SetReadDeadline(fc.deadline) == nil
}

// readHead returns the next request head through its empty line, without consuming
// it; errHandOff when it does not fit in the buffer (or MaxHeaderBytes).
func (fc *fastConn) readHead() (string, error) {
	limit := min(headBufSize, fc.s.opts.MaxHeaderBytes)
	for {
		buf, _ := fc.br.Peek(fc.br.Buffered())
		if i := bytes.Index(buf, []byte("\r\n\r\n")); i >= 0 {
			if i+4 > limit {
				return "", errHandOff
			}
			return string(buf[:i+4]), nil
		}
		if len(buf) >= limit {
			return "", errHandOff
		}
		if _, err := fc.br.Peek(len(buf) + 1); err != nil {
			return "", err
		}
	}
}

// getRequest and headRequest stand for the client's request where http.ReadResponse
// needs one: it reads the Method.
var getRequest, headRequest = &http.Request{Method: http.MethodGet}, &http.Request{Method: http.MethodHead}

// serveOne serves the parsed head of n bytes if the direct path can (served),
// reporting whether the connection may be kept.
func (fc *fastConn) serveOne(n int) (keep, served bool) {
	s, h := fc.s, &fc.head
	st := s.cur.Load()
	if st == nil {
		return false, false
	}
	u := h.url
	start := time.Now()
	p := cleanPath(u.Path)
	cl := fc.client
	cl.host = h.host
	route, code := s.plan(st, h.host, p, 0, &cl)
	if code != 0 || route.Canary != nil || route.Options.BackendProtocol != ingress.ProtocolHTTP {
		return false, false
	}
	up := route.Upstream
	pl := st.pools[up]
	if pl == nil || len(pl.eps) == 0 {
		return false, false
	}
	_, _ = fc.br.Discard(n)
	idle := route.Options.ReadTimeout
	if idle <= 0 {
		idle = s.opts.ReadTimeout
	}
	c := &call{s: s, pool: pl, route: route, scheme: "http", client: cl, path: p, idle: idle}
	uri := u.RequestURI()
	if np, nq, ok := route.Rewrite(p, u.RawQuery); ok {
		uri = (&url.URL{Path: np, RawQuery: nq}).RequestURI()
	}
	o := &outReq{ctx: fc.ctx, method: h.method, uri: uri, host: h.host, fields: h.fields, res: getRequest, gone: fc}
	if h.method == http.MethodHead {
		o.res = headRequest
	}
	fc.w.reset(h.method == http.MethodHead, h.close)
	fc.rec = statusRecorder{ResponseWriter: &fc.w}
	keep, served = true, true
	defer func() {
		if v := recover(); v != nil {
			if v != http.ErrAbortHandler {
				panic(v)
			}
			// The response was cut: the connection closes after what went out (as
			// net/http's, nothing while the head is still held back).
			keep = false
			if fc.w.written {
				_ = fc.bw.Flush()
			}
		}
		fc.stopWatch()
		s.opts.Metrics.request(route.Ingress, pl.service, fc.rec.status(), time.Since(start))
	}()
	fc.startWatch()
	s.forwardOut(&fc.rec, o, c)
	if err := fc.w.finish(); err != nil || h.close || fc.ctx.Err() != nil {
		return false, true
	}
	return keep, true
}

// startWatch arms the read that notices a client going away while its request is
// with the backend; it starts after watchAfter.
func (fc *fastConn) startWatch() {
	fc.wmu.Lock()
	fc.armed = true
	fc.wmu.Unlock()
	fc.watchTimer.Reset(watchAfter)
}

// watch reads the client connection until it is closed (the request's context is
// then cancelled) or stopWatch ends the read. Bytes that arrive (a pipelined request)
// stay in the buffer.
func (fc *fastConn) watch() {
	fc.wmu.Lock()
	if !fc.armed || fc.wdone != nil {
		fc.wmu.Unlock()
		return
	}
	done := make(chan struct{})
	fc.wdone = done
	_ = fc.nc.SetReadDeadline(time.Time{})
	fc.wmu.Unlock()
	defer close(done)
	if _, err := fc.br.Peek(1); err != nil {
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			fc.cancel()
			fc.wmu.Lock()
			if fc.backend != nil {
				_ = fc.backend.SetReadDeadline(aLongTimeAgo)
			}
			fc.wmu.Unlock()
		}
	}
}

// guard (goneGuard) interrupts nc once the client is seen gone.
func (fc *fastConn) guard(nc net.Conn) {
	fc.wmu.Lock()
	fc.backend = nc
	if fc.ctx.Err() != nil {
		_ = nc.SetReadDeadline(aLongTimeAgo)
	}
	fc.wmu.Unlock()
}

// release (goneGuard) ends the watch of the backend connection.
func (fc *fastConn) release() bool {
	fc.wmu.Lock()
	fc.backend = nil
	fc.wmu.Unlock()
	return fc.ctx.Err() == nil
}

// stopWatch disarms the watch and waits for a read in progress to end.
func (fc *fastConn) stopWatch() {
	fc.watchTimer.Stop()
	fc.wmu.Lock()
	fc.armed = false
	done := fc.wdone
	fc.wdone = nil
	if done != nil {
		_ = fc.nc.SetReadDeadline(aLongTimeAgo)
	}
	fc.wmu.Unlock()
	if done != nil {
		<-done
		fc.deadline = time.Time{} // the next readWithin sets it again
	}
}

// fastWriter is the http.ResponseWriter of the fast path: an HTTP/1.1 response on the
// client connection's buffer, framed and completed exactly as net/http's server does
// (chunkWriter.writeHeader): the body's first bodyHold bytes wait with the head until
// a flush or the handler's end, so a body that ends before gets a Content-Length (also
// 0) instead of chunked encoding, the Content-Type is sniffed from the body's start
// when the backend sent neither it nor a Content-Encoding, and a handler aborted before
// that sends nothing; statuses without a body lose their framing headers (304 also its
// Content-Type); a Date header is added; trailers follow a chunked body.
type fastWriter struct {
	bw       *bufio.Writer
	h        http.Header
	held     []byte // body held back with the head (up to bodyHold)
	head     bool   // answering HEAD: no body
	close    bool   // Connection: close
	code     int    // status given to WriteHeader, 0 before
	written  bool   // the head went to bw
	done     bool   // the handler returned
	chunked  bool
	noBody   bool
	trailers []string // announced in the Trailer header
}

// bodyHold is net/http's bufferBeforeChunkingSize: the body a response holds back
// before its head is written.
const bodyHold = 2048

// sniffLen is how much of the body http.DetectContentType looks at.
const sniffLen = 512

func (w *fastWriter) reset(head, close bool) {
	if w.h == nil {
		w.h = http.Header{}
	} else {
		clear(w.h)
	}
	*w = fastWriter{bw: w.bw, h: w.h, held: w.held[:0], head: head, close: close}
}

func (w *fastWriter) Header() http.Header { return w.h }

func (w *fastWriter) WriteHeader(code int) {
	if w.written || w.code != 0 {
		return
	}
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		writeStatusLine(w.bw, code)
		writeFields(w.bw, w.h)
		w.bw.WriteString("\r\n")
		_ = w.bw.Flush()
		return
	}
	w.code = code
}

// bodyAllowed is net/http's bodyAllowedForStatus.
func bodyAllowed(code int) bool {
	return code >= 200 && code != http.StatusNoContent && code != http.StatusNotModified
}

// writeHead sends the status line and headers; p is the body's start (everything
// written when the handler is done), for the Content-Length and the sniffing.
func (w *fastWriter) writeHead(p []byte) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	w.written = true
	h := w.h
	allowed := bodyAllowed(w.code)
	w.noBody = w.head || !allowed
	_, trailers := h["Trailer"]
	for k := range h {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			trailers = true
		}
	}
	hasCL := false
	if cl, ok := h["Content-Length"]; ok {
		if len(cl) > 0 && validLength(cl[0]) {
			hasCL = true
		} else {
			delete(h, "Content-Length") // as net/http: "invalid Content-Length"
		}
	}
	if w.done && !trailers && allowed && !hasCL && (!w.head || len(p) > 0) {
		h["Content-Length"] = []string{strconv.Itoa(len(p))}
		hasCL = true
	}
	if allowed {
		if _, ok := h["Content-Type"]; !ok && len(p) > 0 && h.Get("Content-Encoding") == "" {
			h["Content-Type"] = []string{http.DetectContentType(p[:min(len(p), sniffLen)])}
		}
	} else {
		delete(h, "Content-Length")
		if w.code == http.StatusNotModified {
			delete(h, "Content-Type")
		}
	}
	if _, ok := h["Date"]; !ok {
		h["Date"] = []string{httpDate()}
	}
	// Transfer-Encoding is the writer's: the proxy never passes the backend's.
	delete(h, "Transfer-Encoding")
	w.chunked = !w.noBody && w.code != http.StatusNoContent && !hasCL
	if w.chunked {
		for _, v := range h["Trailer"] {
			for k := range strings.SplitSeq(v, ",") {
				if k = strings.TrimSpace(k); k != "" {
					w.trailers = append(w.trailers, http.CanonicalHeaderKey(k))
				}
			}
		}
	}
	writeStatusLine(w.bw, w.code)
	writeFields(w.bw, h)
	if w.chunked {
		w.bw.WriteString("Transfer-Encoding: chunked\r\n")
	}
	if w.close {
		w.bw.WriteString("Connection: close\r\n")
	}
	w.bw.WriteString("\r\n")
}

// validLength is net/http's check of a handler's Content-Length.
func validLength(v string) bool {
	n, err := strconv.ParseInt(v, 10, 64)
	return err == nil && n >= 0
}

func (w *fastWriter) Write(p []byte) (int, error) {
	if !w.written {
		if len(w.held)+len(p) < bodyHold {
			if w.held == nil {
				w.held = make([]byte, 0, bodyHold)
			}
			w.held = append(w.held, p...)
			return len(p), nil
		}
		if err := w.start(p); err != nil {
			return 0, err
		}
	}
	return w.body(p)
}

// start writes the head, sniffing from the held body and next, then the held body.
func (w *fastWriter) start(next []byte) error {
	n := len(w.held)
	if n < sniffLen && len(next) > 0 {
		w.writeHead(append(w.held, next[:min(len(next), sniffLen-n)]...))
	} else {
		w.writeHead(w.held)
	}
	held := w.held[:n]
	w.held = held[:0]
	_, err := w.body(held)
	return err
}

func (w *fastWriter) body(p []byte) (int, error) {
	if w.noBody || len(p) == 0 {
		return len(p), nil
	}
	if w.chunked {
		w.bw.WriteString(strconv.FormatInt(int64(len(p)), 16))
		w.bw.WriteString("\r\n")
		_, _ = w.bw.Write(p)
		_, err := w.bw.WriteString("\r\n")
		if err != nil {
			return 0, err
		}
		return len(p), nil
	}
	return w.bw.Write(p)
}

// FlushError sends what is buffered (http.ResponseController).
func (w *fastWriter) FlushError() error {
	if !w.written {
		if err := w.start(nil); err != nil {
			return err
		}
	}
	return w.bw.Flush()
}

// finish ends the response (the last chunk and the trailers) and sends it.
func (w *fastWriter) finish() error {
	if !w.written {
		w.done = true
		if err := w.start(nil); err != nil {
			return err
		}
	}
	if w.chunked {
		w.bw.WriteString("0\r\n")
		for _, k := range w.trailers {
			for _, v := range w.h[k] {
				writeHeader(w.bw, k, sanitizeValue(v))
			}
		}
		for k, vv := range w.h {
			if tk, ok := strings.CutPrefix(k, http.TrailerPrefix); ok {
				for _, v := range vv {
					writeHeader(w.bw, http.CanonicalHeaderKey(tk), sanitizeValue(v))
				}
			}
		}
		w.bw.WriteString("\r\n")
	}
	return w.bw.Flush()
}

// dateCache is the Date header of the current second, formatted once per second.
var dateCache atomic.Pointer[cachedDate]

type cachedDate struct {
	sec int64
	s   string
}

// httpDate is time.Now in http.TimeFormat.
func httpDate() string {
	now := time.Now()
	if d := dateCache.Load(); d != nil && d.sec == now.Unix() {
		return d.s
	}
	d := &cachedDate{sec: now.Unix(), s: now.UTC().Format(http.TimeFormat)}
	dateCache.Store(d)
	return d.s
}

func writeStatusLine(bw *bufio.Writer, code int) {
	bw.WriteString("HTTP/1.1 ")
	bw.WriteString(strconv.Itoa(code))
	bw.WriteByte(' ')
	if t := http.StatusText(code); t != "" {
		bw.WriteString(t)
	} else {
		bw.WriteString("status code ")
		bw.WriteString(strconv.Itoa(code))
	}
	bw.WriteString("\r\n")
}

// writeFields writes h as net/http's server does: fields with invalid names are left
// out, line breaks in values become blanks, trailer declarations (TrailerPrefix) wait.
func writeFields(bw *bufio.Writer, h http.Header) {
	for k, vv := range h {
		if strings.HasPrefix(k, http.TrailerPrefix) || !validFieldName(k) {
			continue
		}
		for _, v := range vv {
			writeHeader(bw, k, sanitizeValue(v))
		}
	}
}

func validFieldName(k string) bool {
	for i := 0; i < len(k); i++ {
		if c := k[i]; c <= ' ' || c >= 0x7f || c == ':' {
			return false
		}
	}
	return k != ""
}

var newlines = strings.NewReplacer("\r\n", " ", "\r", " ", "\n", " ")

func sanitizeValue(v string) string {
	if strings.ContainsAny(v, "\r\n") {
		return newlines.Replace(v)
	}
	return v
}
