package server

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http/httpguts"
)

// The direct path proxies the common request, an idempotent one (GET, HEAD, ...)
// without a body or an upgrade, to a plain-HTTP backend over HTTP/1.1 connections
// of its own: the handler's goroutine writes the request and reads the response
// itself, where http.Transport hands each request to a write goroutine and each
// response back from a read goroutine of the connection, and ReverseProxy clones the
// request and its header map. Measured in the lab under wrk (make bench-lab), this
// took the proxy's CPU per plain-HTTP request from about 90µs to about 60µs.
//
// Every other request (a body, an upgrade, Expect, a method that is not idempotent,
// an HTTPS or gRPC backend) goes through ReverseProxy and http.Transport, whose
// behaviour the direct path copies: the same headers reach the backend and the client,
// 1xx answers and trailers are passed on, responses of unknown length are flushed as
// they come, proxy-read-timeout bounds the wait for the head and every gap in the body,
// a client that goes away ends the exchange, and a keep-alive connection the backend
// closed while it sat idle is replaced without failing the request. That last point is
// why only idempotent requests take this path: without a read goroutine per idle
// connection such a close is found out only by using the connection, and only a
// request that is safe to repeat may then be sent again.

// direct reports whether r can take the direct path to a plain-HTTP backend. A
// ContentLength of 0 means no body over HTTP/1.1 and HTTP/2 alike (an HTTP/2 request
// always has a Body, empty when the stream ended with its headers), as ReverseProxy
// reads it.
func direct(r *http.Request) bool {
	return r.ContentLength == 0 && idempotent(r.Method) && r.Header["Upgrade"] == nil && r.Header["Expect"] == nil
}

// backendConn is one keep-alive HTTP/1.1 connection to an endpoint.
type backendConn struct {
	nc       net.Conn
	lim      limitReader
	br       *bufio.Reader
	bw       *bufio.Writer
	idle     time.Time // when it was put back into its endpoint's idle list
	deadline time.Time // the read deadline last set

	// The response being relayed when readSimple parsed it, and the body reader of
	// any response: reused, as a connection carries one response at a time.
	res    http.Response
	hdr    http.Header
	length lengthBody
	body   deadlineBody
}

// readWithin makes the next reads fail after d from now. Moving a deadline costs a
// timer update in the runtime, so one that is already at least 15/16 of d away is
// left: reads time out after between 15/16 of d and d. A deadline moved after ctx
// ended would undo the past deadline its AfterFunc set (the client went away), so
// then readWithin fails.
func (c *backendConn) readWithin(ctx context.Context, now time.Time, d time.Duration) error {
	if c.deadline.Sub(now) >= d-d/16 {
		return nil
	}
	c.deadline = now.Add(d)
	if err := c.nc.SetReadDeadline(c.deadline); err != nil {
		return err
	}
	return ctx.Err()
}

// limitReader bounds what the response head may take (MaxHeaderBytes); while left is
// negative reads are not limited (the body).
type limitReader struct {
	r    io.Reader
	left int64
}

var errHeadTooLarge = errors.New("backend response headers exceed the limit")

func (l *limitReader) Read(p []byte) (int, error) {
	if l.left < 0 {
		return l.r.Read(p)
	}
	if l.left == 0 {
		return 0, errHeadTooLarge
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	return n, err
}

// idleConns are the idle keep-alive connections of one endpoint, most recently used
// last. Once retired (the endpoint left every Table) it keeps none.
type idleConns struct {
	mu      sync.Mutex
	conns   []*backendConn
	retired bool
}

// get takes the most recently used idle connection, or nil.
func (l *idleConns) get() *backendConn {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := len(l.conns)
	if n == 0 {
		return nil
	}
	c := l.conns[n-1]
	l.conns[n-1] = nil
	l.conns = l.conns[:n-1]
	return c
}

// put keeps c for the next request unless max connections are idle already or the
// endpoint was retired; then c is closed.
func (l *idleConns) put(c *backendConn, max int, now time.Time) {
	l.mu.Lock()
	keep := !l.retired && len(l.conns) < max
	if keep {
		c.idle = now
		l.conns = append(l.conns, c)
	}
	l.mu.Unlock()
	if !keep {
		_ = c.nc.Close()
	}
}

// closeIdle closes the connections idle since before (all with the zero time after
// retire) and reports how many remain.
func (l *idleConns) closeIdle(before time.Time, retire bool) int {
	l.mu.Lock()
	var old []*backendConn
	keep := l.conns[:0]
	for _, c := range l.conns {
		if retire || c.idle.Before(before) {
			old = append(old, c)
		} else {
			keep = append(keep, c)
		}
	}
	clear(l.conns[len(keep):])
	l.conns = keep
	if retire {
		l.retired = true
	}
	n := len(l.conns)
	l.mu.Unlock()
	for _, c := range old {
		_ = c.nc.Close()
	}
	return n
}

// idleConnTimeout closes keep-alive connections to backends unused this long (as the
// Transport's IdleConnTimeout of the other path).
const idleConnTimeout = 60 * time.Second

// sweepIdle closes idle backend connections older than idleConnTimeout until ctx
// ends, then all of them.
func (s *Server) sweepIdle(ctx context.Context) {
	t := time.NewTicker(idleConnTimeout / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			s.mu.Lock()
			for _, e := range s.eps {
				e.idle.closeIdle(time.Time{}, true)
			}
			s.mu.Unlock()
			return
		case now := <-t.C:
			s.mu.Lock()
			eps := make([]*endpoint, 0, len(s.eps))
			for _, e := range s.eps {
				eps = append(eps, e)
			}
			s.mu.Unlock()
			for _, e := range eps {
				e.idle.closeIdle(now.Add(-idleConnTimeout), false)
			}
		}
	}
}

func (s *Server) newBackendConn(nc net.Conn) *backendConn {
	c := &backendConn{nc: nc, lim: limitReader{r: nc, left: -1}}
	c.br = bufio.NewReaderSize(&c.lim, 16<<10)
	c.bw = bufio.NewWriterSize(nc, 4<<10)
	return c
}

// goneGuard interrupts the wait for a backend when the client goes away, for a
// connection that knows it without its request's context (the fast path's): a
// context.AfterFunc per request costs two allocations and a registration.
type goneGuard interface {
	// guard makes nc's reads fail (a past deadline) once the client is gone, already
	// now if it is; release ends that and reports whether the client is still there
	// (false: nc may have been interrupted).
	guard(nc net.Conn)
	release() bool
}

// clientWatch is the client-gone arrangement of one exchange: guard's, else stop
// (of a context.AfterFunc).
type clientWatch struct {
	guard goneGuard
	stop  func() bool
}

// release ends the watch and reports whether the client was still there.
func (w clientWatch) release() bool {
	if w.guard != nil {
		return w.guard.release()
	}
	return w.stop()
}

// outReq is what the direct path sends to a backend: a request read by net/http
// (header) or by the fast path (fields).
type outReq struct {
	ctx    context.Context
	method string
	uri    string // the request-target to send, after rewrite-target
	host   string
	header http.Header
	fields []headerField
	res    *http.Request // for http.ReadResponse, which looks at its Method only
	gone   goneGuard     // nil: ctx's end says the client is gone
}

// forward proxies r (a direct request) to an endpoint of c's pool; after a failure,
// on to the next endpoint (tryEndpoints).
func (s *Server) forward(w *statusRecorder, r *http.Request, c *call) {
	uri := r.URL.RequestURI()
	if np, nq, ok := c.route.Rewrite(c.path, r.URL.RawQuery); ok {
		uri = (&url.URL{Path: np, RawQuery: nq}).RequestURI()
	}
	s.forwardOut(w, &outReq{ctx: r.Context(), method: r.Method, uri: uri, host: r.Host, header: r.Header, res: r}, c)
}

// forwardOut sends o to an endpoint of c's pool, then to the next one after a failure
// (tryEndpoints), and answers the client.
func (s *Server) forwardOut(w *statusRecorder, o *outReq, c *call) {
	ctx := o.ctx
	err := s.tryEndpoints(c.pool, true, func() bool { return ctx.Err() != nil },
		func(e *endpoint) (bool, error) { return s.exchange(w, o, c, e) })
	if err != nil {
		s.answerError(ctx, w, c, err)
	}
}

// exchange sends o to e and, once a response head arrived, relays the response. It
// returns an error only while nothing was sent to the client; connFailed says that no
// connection could be made (nothing reached the backend).
func (s *Server) exchange(w *statusRecorder, o *outReq, c *call, e *endpoint) (connFailed bool, err error) {
	e.inflight.Add(1)
	defer e.inflight.Add(-1)
	ctx := o.ctx
	bc := e.idle.get()
	for {
		reused := bc != nil
		if !reused {
			nc, err := s.dial(ctx, "tcp", e.hostport)
			if err != nil {
				return true, err
			}
			bc = s.newBackendConn(nc)
		}
		// A client that goes away ends the wait for the backend (and the connection).
		nc := bc.nc
		stop := clientWatch{guard: o.gone}
		if o.gone != nil {
			o.gone.guard(nc)
		} else {
			stop.stop = context.AfterFunc(ctx, func() { _ = nc.SetReadDeadline(aLongTimeAgo) })
		}
		res, received, err := s.roundTrip(bc, w, o, c, e.hostport)
		if err == nil {
			e.succeeded()
			s.relay(ctx, w, res, bc, c, e, stop)
			return false, nil
		}
		stop.release()
		_ = nc.Close()
		bc = nil
		// A keep-alive connection that the backend closed while it sat idle fails
		// before any answer; the request (idempotent) goes out again on a new
		// connection, as http.Transport does.
		var ne net.Error
		if !reused || received || ctx.Err() != nil || (errors.As(err, &ne) && ne.Timeout()) {
			return false, err
		}
	}
}

// roundTrip writes the request and reads the response head, after any 1xx answers
// (which go to the client as they come), within proxy-read-timeout. received reports
// whether any byte of a response arrived.
func (s *Server) roundTrip(bc *backendConn, w *statusRecorder, o *outReq, c *call, addr string) (res *http.Response, received bool, err error) {
	writeRequest(bc.bw, o, addr, &c.client)
	if err := bc.bw.Flush(); err != nil {
		return nil, false, err
	}
	if err := bc.readWithin(o.ctx, time.Now(), c.idle); err != nil {
		return nil, false, err
	}
	limit := int64(s.opts.MaxHeaderBytes)
	bc.lim.left = limit
	informed := false // a 1xx went to the client
	defer func() {
		received = received || informed || bc.lim.left != limit
		bc.lim.left = -1
	}()
	for {
		res, err := bc.readResponse(o.res)
		if err != nil {
			return nil, false, err
		}
		if res.StatusCode == http.StatusSwitchingProtocols {
			return nil, true, errors.New("backend switched protocols without an upgrade request")
		}
		if res.StatusCode >= 200 || res.StatusCode < 100 {
			return res, true, nil
		}
		// 1xx informational (103 Early Hints, a 100 Continue nobody asked for): the
		// client gets it, as from ReverseProxy.
		h := w.Header()
		for k, vv := range res.Header {
			h[k] = vv
		}
		w.WriteHeader(res.StatusCode)
		clear(h)
		informed = true
		bc.lim.left = limit
	}
}

var aLongTimeAgo = time.Unix(1, 0)

// relay sends the response to the client and puts the connection back into the idle
// list when the backend lets it be reused. Once the status line went out, a failure
// can only cut the response (http.ErrAbortHandler, as ReverseProxy does). stop
// unregisters the client-gone callback of the connection.
func (s *Server) relay(ctx context.Context, w *statusRecorder, res *http.Response, bc *backendConn, c *call, e *endpoint, stop clientWatch) {
	removeHopByHop(res.Header)
	h := w.Header()
	for k, vv := range res.Header {
		h[k] = vv
	}
	announced := len(res.Trailer)
	if announced > 0 {
		keys := make([]string, 0, announced)
		for k := range res.Trailer {
			keys = append(keys, k)
		}
		h.Add("Trailer", strings.Join(keys, ", "))
	}
	w.WriteHeader(res.StatusCode)

	var dst io.Writer = w
	if flushNow(res) {
		dst = flushWriter{w: w, rc: http.NewResponseController(w)}
	}
	bufp := buffers.Get().(*[]byte)
	bc.body = deadlineBody{ctx: ctx, rc: res.Body, bc: bc, idle: c.idle}
	werr, rerr := copyBody(dst, &bc.body, *bufp)
	bc.body = deadlineBody{}
	buffers.Put(bufp)
	trailer := res.Trailer // res may be bc's, reused once bc is back in the idle list
	if !stop.release() || werr != nil || rerr != nil || res.Close {
		_ = bc.nc.Close()
		if werr != nil || rerr != nil {
			panic(http.ErrAbortHandler)
		}
	} else {
		e.idle.put(bc, s.opts.MaxIdleConnsPerEndpoint, time.Now())
	}
	if len(trailer) > 0 {
		_ = http.NewResponseController(w).Flush() // trailers need chunked encoding, not a Content-Length
		if len(trailer) == announced {
			for k, vv := range trailer {
				h[k] = vv
			}
			return
		}
		for k, vv := range trailer {
			h[http.TrailerPrefix+k] = vv
		}
	}
}

// copyBody copies src to dst and tells the write error from the read error.
func copyBody(dst io.Writer, src io.Reader, buf []byte) (werr, rerr error) {
	for {
		nr, err := src.Read(buf)
		if nr > 0 {
			nw, err := dst.Write(buf[:nr])
			if err == nil && nw < nr {
				err = io.ErrShortWrite
			}
			if err != nil {
				return err, nil
			}
		}
		if err == io.EOF {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// deadlineBody renews proxy-read-timeout before every read that has to wait for the
// backend (nothing buffered), so the timeout bounds each gap, as nginx's
// proxy_read_timeout.
type deadlineBody struct {
	ctx  context.Context
	rc   io.ReadCloser
	bc   *backendConn
	idle time.Duration
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	if b.bc.br.Buffered() == 0 {
		if err := b.bc.readWithin(b.ctx, time.Now(), b.idle); err != nil {
			return 0, err
		}
	}
	return b.rc.Read(p)
}

// flushNow is ReverseProxy's rule: responses of unknown length and event streams are
// sent to the client as every piece arrives.
func flushNow(res *http.Response) bool {
	if res.ContentLength == -1 {
		return true
	}
	const sse = "text/event-stream"
	ct := res.Header.Get("Content-Type")
	return len(ct) >= len(sse) && strings.EqualFold(ct[:len(sse)], sse)
}

type flushWriter struct {
	w  io.Writer
	rc *http.ResponseController
}

func (f flushWriter) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	if err == nil {
		err = f.rc.Flush()
	}
	return n, err
}

// hopHeaders are the headers of one connection (RFC 9110 7.6.1), as ReverseProxy's
// list; they never cross the proxy.
var hopHeaders = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// removeHopByHop deletes the hop-by-hop headers of a response and the ones its
// Connection header names.
func removeHopByHop(h http.Header) {
	for _, f := range h["Connection"] {
		for sf := range strings.SplitSeq(f, ",") {
			if sf = textproto.TrimString(sf); sf != "" {
				delete(h, textproto.CanonicalMIMEHeaderKey(sf))
			}
		}
	}
	for _, k := range hopHeaders {
		delete(h, k)
	}
}

// writeRequest writes o as an HTTP/1.1 request: the client's Host and headers but
// the hop-by-hop ones and the X-Forwarded-* set from cl, exactly what the other path
// sends (ReverseProxy with Rewrite, then http.Transport).
func writeRequest(bw *bufio.Writer, o *outReq, addr string, cl *client) {
	host := o.host
	if host == "" {
		host = addr
	}
	bw.WriteString(o.method)
	bw.WriteByte(' ')
	bw.WriteString(o.uri)
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(host)
	bw.WriteString("\r\n")
	var named []string // headers the Connection header names: hop-by-hop too
	connToken := func(f string) {
		for sf := range strings.SplitSeq(f, ",") {
			if sf = textproto.TrimString(sf); sf != "" {
				named = append(named, textproto.CanonicalMIMEHeaderKey(sf))
			}
		}
	}
	ua, trailers := "", false
	if o.header != nil {
		for _, f := range o.header["Connection"] {
			connToken(f)
		}
		for k, vv := range o.header {
			if !passHeader(k, named) {
				continue
			}
			for _, v := range vv {
				writeHeader(bw, k, v)
			}
		}
		if v := o.header["User-Agent"]; len(v) > 0 {
			ua = v[0]
		}
		trailers = httpguts.HeaderValuesContainsToken(o.header["Te"], "trailers")
	} else {
		for _, f := range o.fields {
			if f.name == "Connection" {
				connToken(f.value)
			}
		}
		uaSeen := false
		for _, f := range o.fields {
			switch f.name {
			case "User-Agent":
				if !uaSeen {
					ua, uaSeen = f.value, true
				}
			case "Te":
				trailers = trailers || httpguts.HeaderValuesContainsToken([]string{f.value}, "trailers")
			}
			if passHeader(f.name, named) {
				writeHeader(bw, f.name, f.value)
			}
		}
	}
	if trailers {
		bw.WriteString("Te: trailers\r\n")
	}
	if o.method == http.MethodPut {
		bw.WriteString("Content-Length: 0\r\n") // as http.Transport for a method that expects a body
	}
	if ua != "" {
		writeHeader(bw, "User-Agent", ua) // the first only, as http.Transport
	}
	writeHeader(bw, "X-Forwarded-For", cl.xff)
	writeHeader(bw, "X-Real-Ip", cl.real)
	writeHeader(bw, "X-Forwarded-Proto", cl.proto)
	writeHeader(bw, "X-Forwarded-Scheme", cl.proto)
	writeHeader(bw, "X-Scheme", cl.proto)
	writeHeader(bw, "X-Forwarded-Host", cl.host)
	if cl.port != "" {
		writeHeader(bw, "X-Forwarded-Port", cl.port)
	}
	bw.WriteString("\r\n")
}

// passHeader reports whether the request header k (canonical) goes to the backend:
// not hop-by-hop (nor named by Connection), not one the proxy sets itself.
func passHeader(k string, named []string) bool {
	switch k {
	case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
		"Te", "Trailer", "Transfer-Encoding", "Upgrade", "Host", "Content-Length", "User-Agent",
		"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Forwarded-Port",
		"X-Forwarded-Scheme", "X-Scheme", "X-Real-Ip":
		return false
	}
	return len(named) == 0 || !slices.Contains(named, k)
}

func writeHeader(bw *bufio.Writer, k, v string) {
	bw.WriteString(k)
	bw.WriteString(": ")
	bw.WriteString(v)
	bw.WriteString("\r\n")
}
