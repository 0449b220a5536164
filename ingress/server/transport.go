package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ironlb/ironlb/ingress"
)

// dialError marks a failure to establish a connection to an endpoint (TCP connect, or
// TLS handshake for HTTPS and GRPCS backends): nothing of the request was sent, so any
// request may be retried on another endpoint.
type dialError struct{ err error }

func (e *dialError) Error() string { return "connecting to the backend: " + e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

var (
	errNoEndpoint   = errors.New("no ready endpoint")
	errBodyTooLarge = errors.New("request body larger than proxy-body-size")
)

// transportKey: one http.Transport (one keep-alive pool per endpoint) per backend
// protocol and response-header timeout.
type transportKey struct {
	proto   ingress.Protocol
	timeout time.Duration
}

func (s *Server) transport(proto ingress.Protocol, timeout time.Duration) *http.Transport {
	k := transportKey{proto, timeout}
	if t, ok := s.transports.Load(k); ok {
		return t.(*http.Transport)
	}
	t, _ := s.transports.LoadOrStore(k, s.newTransport(proto, timeout))
	return t.(*http.Transport)
}

func (s *Server) newTransport(proto ingress.Protocol, headerTimeout time.Duration) *http.Transport {
	t := &http.Transport{
		DialContext:            s.dial,
		MaxIdleConnsPerHost:    s.opts.MaxIdleConnsPerEndpoint,
		IdleConnTimeout:        60 * time.Second,
		ResponseHeaderTimeout:  headerTimeout,
		DisableCompression:     true, // pass the client's Accept-Encoding, never add one
		ReadBufferSize:         16 << 10,
		WriteBufferSize:        16 << 10,
		MaxResponseHeaderBytes: int64(s.opts.MaxHeaderBytes),
		Protocols:              new(http.Protocols),
	}
	switch proto {
	case ingress.ProtocolHTTP:
		t.Protocols.SetHTTP1(true)
	case ingress.ProtocolHTTPS:
		t.Protocols.SetHTTP1(true)
		t.DialTLSContext = s.dialTLS([]string{"http/1.1"})
	case ingress.ProtocolGRPC:
		t.Protocols.SetUnencryptedHTTP2(true)
	case ingress.ProtocolGRPCS:
		t.Protocols.SetHTTP2(true)
		t.DialTLSContext = s.dialTLS([]string{"h2"})
	}
	return t
}

func (s *Server) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := s.dialer.DialContext(ctx, network, addr)
	if err != nil {
		return nil, &dialError{err}
	}
	return c, nil
}

// dialTLS connects to an HTTPS or GRPCS backend without verifying its certificate
// (ingress-nginx's default, proxy-ssl-verify off) and without SNI (endpoints are
// addresses).
func (s *Server) dialTLS(alpn []string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		raw, err := s.dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		c := tls.Client(raw, &tls.Config{InsecureSkipVerify: true, NextProtos: alpn, MinVersion: tls.VersionTLS12}) //nolint:gosec // as ingress-nginx: backends are not verified
		if err := c.HandshakeContext(ctx); err != nil {
			_ = raw.Close()
			return nil, &dialError{fmt.Errorf("TLS handshake: %w", err)}
		}
		return c, nil
	}
}

// call is the state of one proxied request, shared by the handler, the round
// tripper and the error handler.
type call struct {
	s        *Server
	pool     *pool
	route    *ingress.Route
	base     *http.Transport
	scheme   string
	client   client
	path     string // cleaned request path, what rewrite-target applies to
	idle     time.Duration
	tooLarge atomic.Bool
	upgraded bool
}

type callKey struct{}

// roundTripper sends a request to an endpoint of the call's pool, retrying on another
// endpoint after a connection failure (every method: nothing was sent) or after a
// failure of an idempotent request without body (which is safe to repeat).
type roundTripper struct{}

func (roundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	c := req.Context().Value(callKey{}).(*call)
	hasBody := req.Body != nil && req.Body != http.NoBody
	var res *http.Response
	err := c.s.tryEndpoints(c.pool, idempotent(req.Method) && !hasBody,
		func() bool { return req.Context().Err() != nil || c.tooLarge.Load() },
		func(e *endpoint) (bool, error) {
			out := *req
			u := *req.URL
			u.Scheme, u.Host = c.scheme, e.hostport
			out.URL = &u
			if hasBody {
				// The transport closes the body after a failed dial; keep it readable
				// for the next endpoint. ReverseProxy closes the real one.
				out.Body = keepOpen{req.Body}
			}
			e.inflight.Add(1)
			r, err := c.base.RoundTrip(&out)
			if err != nil {
				e.inflight.Add(-1)
				var de *dialError
				return errors.As(err, &de), err
			}
			e.succeeded()
			c.upgraded = r.StatusCode == http.StatusSwitchingProtocols
			r.Body = newResponseBody(r.Body, e, c.idle, c.upgraded)
			res = r
			return false, nil
		})
	return res, err
}

// tryEndpoints calls try with endpoints of p until one succeeds, at most MaxTries: a
// try that could not connect (try reports connFailed) goes on to another endpoint;
// one that failed after connecting only when retryable; none after abort() or a
// timeout (the backend is slow, not gone: proxy-read-timeout). Failures count
// towards the endpoint's ejection.
func (s *Server) tryEndpoints(p *pool, retryable bool, abort func() bool, try func(*endpoint) (connFailed bool, err error)) error {
	var triedBuf [4]*endpoint
	tried := triedBuf[:0]
	err := errNoEndpoint
	for len(tried) < s.opts.MaxTries {
		now := time.Now().UnixNano()
		e := p.pick(s.opts.Balancing, tried, now)
		if e == nil {
			break
		}
		if len(tried) > 0 {
			s.opts.Metrics.retry()
		}
		tried = append(tried, e)
		var connFailed bool
		if connFailed, err = try(e); err == nil || abort() {
			return err
		}
		var ne net.Error
		if !connFailed && errors.As(err, &ne) && ne.Timeout() {
			return err
		}
		if e.failed(now, s.opts.FailureThreshold, s.opts.EjectFor) {
			s.opts.Metrics.ejection()
		}
		if !connFailed && !retryable {
			return err
		}
	}
	return err
}

type keepOpen struct{ io.Reader }

func (keepOpen) Close() error { return nil }

func idempotent(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

// responseBody counts the request as in flight until the response body is closed and,
// for ordinary responses, closes the body when the backend sends nothing for idle
// (proxy-read-timeout between two reads, as nginx's proxy_read_timeout). Upgraded
// connections (WebSocket) are not timed.
type responseBody struct {
	io.ReadCloser
	e     *endpoint
	idle  time.Duration
	timer *time.Timer
	once  sync.Once
}

func newResponseBody(rc io.ReadCloser, e *endpoint, idle time.Duration, upgraded bool) io.ReadCloser {
	b := &responseBody{ReadCloser: rc, e: e, idle: idle}
	if idle > 0 && !upgraded {
		b.timer = time.AfterFunc(idle, func() { _ = rc.Close() })
	}
	if rw, ok := rc.(io.ReadWriteCloser); ok && upgraded {
		return &upgradedBody{responseBody: b, w: rw}
	}
	return b
}

func (b *responseBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if b.timer != nil && n > 0 {
		b.timer.Reset(b.idle)
	}
	return n, err
}

func (b *responseBody) Close() error {
	b.once.Do(func() {
		if b.timer != nil {
			b.timer.Stop()
		}
		b.e.inflight.Add(-1)
	})
	return b.ReadCloser.Close()
}

// upgradedBody keeps the io.Writer of a 101 response body, which ReverseProxy needs to
// copy the client's bytes to the backend.
type upgradedBody struct {
	*responseBody
	w io.Writer
}

func (b *upgradedBody) Write(p []byte) (int, error) { return b.w.Write(p) }

// limitedBody fails a request body that grows past the limit (chunked uploads have no
// Content-Length to check up front).
type limitedBody struct {
	io.ReadCloser
	left int64
	c    *call
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// One byte more than allowed tells "exactly the limit" from "over it".
		var one [1]byte
		n, err := b.ReadCloser.Read(one[:])
		if n > 0 {
			b.c.tooLarge.Store(true)
			return 0, errBodyTooLarge
		}
		return 0, err
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.ReadCloser.Read(p)
	b.left -= int64(n)
	return n, err
}
