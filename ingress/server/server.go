package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/klog/v2"

	"github.com/ironlb/ironlb/ingress"
)

// Options configure a Server. The zero value of every field means its default.
type Options struct {
	// HTTPAddr and HTTPSAddr are where ListenAndServe listens (":80", ":443"); "-"
	// disables one.
	HTTPAddr, HTTPSAddr string
	// TrustedProxies may set X-Forwarded-For/-Proto/-Host/-Port for their clients
	// (e.g. an L7 load balancer in front). From other peers those headers are replaced.
	TrustedProxies []netip.Prefix
	Balancing      Balancing
	// DefaultCertificate answers TLS handshakes that neither the Table's hosts nor its
	// default certificate answer. Nil: a self-signed certificate made by New.
	DefaultCertificate *tls.Certificate
	Metrics            *Metrics
	// MaxTries bounds the endpoints one request is sent to (3, as ingress-nginx's
	// proxy-next-upstream-tries).
	MaxTries int
	// FailureThreshold consecutive connection failures eject an endpoint for EjectFor
	// (defaults 3 and 10s).
	FailureThreshold int
	EjectFor         time.Duration
	// DialTimeout bounds connecting to an endpoint (5s, nginx's proxy_connect_timeout).
	DialTimeout time.Duration
	// ReadTimeout is the proxy-read-timeout of Ingresses that do not set one (60s).
	ReadTimeout time.Duration
	// MaxBodyBytes is the proxy-body-size of Ingresses that do not set one; 0 (the
	// default) is unlimited. ingress-nginx's default is 1m.
	MaxBodyBytes int64
	// MaxHeaderBytes bounds request and response headers (1 MiB: no "too big header"
	// for the cookies and tokens that overflow nginx's default 4 × 8k buffers).
	MaxHeaderBytes int
	// MaxIdleConnsPerEndpoint is the keep-alive pool per endpoint (256).
	MaxIdleConnsPerEndpoint int
	// IdleTimeout closes idle client keep-alive connections (75s, as nginx).
	IdleTimeout time.Duration
	// ShutdownDelay is how long Serve keeps accepting connections after its context
	// ends, while the endpoint of a terminating Pod is being removed from load
	// balancers (0: stop at once).
	ShutdownDelay time.Duration
	// ShutdownTimeout is how long Serve then waits for requests in flight (25s).
	ShutdownTimeout time.Duration
}

func (o *Options) defaults() {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	if o.HTTPAddr == "" {
		o.HTTPAddr = ":80"
	}
	if o.HTTPSAddr == "" {
		o.HTTPSAddr = ":443"
	}
	def(&o.MaxTries, 3)
	def(&o.FailureThreshold, 3)
	def(&o.MaxHeaderBytes, 1<<20)
	def(&o.MaxIdleConnsPerEndpoint, 256)
	defDur(&o.EjectFor, 10*time.Second)
	defDur(&o.DialTimeout, 5*time.Second)
	defDur(&o.ReadTimeout, 60*time.Second)
	defDur(&o.IdleTimeout, 75*time.Second)
	defDur(&o.ShutdownTimeout, 25*time.Second)
}

// Server is the HTTP(S) proxy. It serves the Table last given to Update; requests keep
// the Table they started with.
type Server struct {
	opts    Options
	cur     atomic.Pointer[state]
	defCert *tls.Certificate
	dialer  net.Dialer
	proxy   *httputil.ReverseProxy

	transports sync.Map // transportKey -> *http.Transport

	mu  sync.Mutex                   // serialises Update
	eps map[netip.AddrPort]*endpoint // endpoint state shared across Tables
}

// state is one published Table with the balancing pools of its Upstreams.
type state struct {
	table *ingress.Table
	pools map[*ingress.Upstream]*pool
}

// New makes a Server. It serves 503 until the first Update.
func New(opts Options) (*Server, error) {
	opts.defaults()
	s := &Server{opts: opts, defCert: opts.DefaultCertificate, eps: map[netip.AddrPort]*endpoint{}}
	if s.defCert == nil {
		c, err := ingress.SelfSigned(10*365*24*time.Hour, "ironlb-ingress.invalid")
		if err != nil {
			return nil, fmt.Errorf("default certificate: %w", err)
		}
		s.defCert = c
	}
	s.dialer = net.Dialer{Timeout: opts.DialTimeout, KeepAlive: 30 * time.Second}
	s.proxy = &httputil.ReverseProxy{
		Rewrite:        s.rewrite,
		Transport:      roundTripper{},
		ErrorHandler:   s.proxyError,
		ModifyResponse: nil,
		BufferPool:     bufferPool{},
		ErrorLog:       log.New(klogWriter{}, "", 0),
	}
	return s, nil
}

// Update publishes t. Endpoint state (in-flight requests, failures, ejections) carries
// over for addresses t still lists. Requests in flight, WebSockets and keep-alive
// connections are not touched.
func (s *Server) Update(t *ingress.Table) {
	if t == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	live := make(map[netip.AddrPort]*endpoint, len(s.eps))
	pools := make(map[*ingress.Upstream]*pool, len(t.Upstreams()))
	for _, u := range t.Upstreams() {
		p := &pool{eps: make([]*endpoint, 0, len(u.Endpoints)), service: u.Service.Namespace + "/" + u.Service.Name}
		// A random start keeps round robin even when tables are swapped every few
		// requests (endpoint churn).
		p.next.Store(rand.Uint32())
		for _, a := range u.Endpoints {
			e := live[a]
			if e == nil {
				if e = s.eps[a]; e == nil {
					e = newEndpoint(a)
				}
				live[a] = e
			}
			p.eps = append(p.eps, e)
		}
		pools[u] = p
	}
	for a, e := range s.eps {
		if live[a] == nil {
			e.idle.closeIdle(time.Time{}, true) // the endpoint left every Table
		}
	}
	s.eps = live
	s.cur.Store(&state{table: t, pools: pools})
	s.opts.Metrics.reload()
}

// Ready reports whether a Table was published.
func (s *Server) Ready() bool { return s.cur.Load() != nil }

// getCertificate picks the certificate of the current Table, so a rotated Secret is
// served from the next handshake on while established connections keep theirs.
func (s *Server) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if st := s.cur.Load(); st != nil {
		if c := st.table.Certificate(hello.ServerName); c != nil {
			return c, nil
		}
	}
	return s.defCert, nil
}

// ListenAndServe listens on Options.HTTPAddr and HTTPSAddr and serves until ctx ends.
func (s *Server) ListenAndServe(ctx context.Context) error {
	var lc net.ListenConfig
	var httpLn, httpsLn net.Listener
	var err error
	if s.opts.HTTPAddr != "-" {
		if httpLn, err = lc.Listen(ctx, "tcp", s.opts.HTTPAddr); err != nil {
			return fmt.Errorf("listening for HTTP: %w", err)
		}
	}
	if s.opts.HTTPSAddr != "-" {
		if httpsLn, err = lc.Listen(ctx, "tcp", s.opts.HTTPSAddr); err != nil {
			if httpLn != nil {
				_ = httpLn.Close()
			}
			return fmt.Errorf("listening for HTTPS: %w", err)
		}
	}
	return s.Serve(ctx, httpLn, httpsLn)
}

// Serve serves plain HTTP (HTTP/1.1 and h2c) on httpLn and HTTPS (HTTP/1.1 and HTTP/2)
// on httpsLn, either of which may be nil, until ctx ends; after Options.ShutdownDelay
// it stops accepting, closes idle keep-alive connections and waits up to
// Options.ShutdownTimeout for requests in flight. Upgraded connections (WebSockets)
// are not waited for.
func (s *Server) Serve(ctx context.Context, httpLn, httpsLn net.Listener) error {
	sweepCtx, stopSweep := context.WithCancel(context.WithoutCancel(ctx))
	defer stopSweep()
	go s.sweepIdle(sweepCtx)
	var servers []*http.Server
	var fronts []*front
	errc := make(chan error, 4)
	if httpLn != nil {
		hs := s.httpServer()
		hs.Protocols.SetHTTP1(true)
		hs.Protocols.SetUnencryptedHTTP2(true)
		f := s.newFront(httpLn, nil)
		servers, fronts = append(servers, hs), append(fronts, f)
		go func() { errc <- hs.Serve(f.handoff) }()
		go func() { errc <- f.serve() }()
	}
	if httpsLn != nil {
		hs := s.httpServer()
		hs.Protocols.SetHTTP1(true)
		hs.Protocols.SetHTTP2(true)
		// The fast path makes the handshakes; hs serves the HTTP/2 connections and
		// the HTTP/1.1 ones handed over (NextProtos tells Serve to set up HTTP/2).
		hs.TLSConfig = &tls.Config{GetCertificate: s.getCertificate, MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}}
		hs.ConnContext = connContext
		f := s.newFront(httpsLn, &tls.Config{GetCertificate: s.getCertificate, MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}})
		servers, fronts = append(servers, hs), append(fronts, f)
		go func() { errc <- hs.Serve(f.handoff) }()
		go func() { errc <- f.serve() }()
	}
	var err error
	select {
	case <-ctx.Done():
		if s.opts.ShutdownDelay > 0 {
			klog.InfoS("Shutting down: still accepting connections", "for", s.opts.ShutdownDelay)
			select {
			case <-time.After(s.opts.ShutdownDelay):
			case err = <-errc:
			}
		}
	case err = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.opts.ShutdownTimeout)
	defer cancel()
	for _, f := range fronts {
		f.close()
	}
	for _, hs := range servers {
		if serr := hs.Shutdown(sctx); serr != nil && err == nil {
			err = fmt.Errorf("shutting down: %w", serr)
		}
	}
	for _, f := range fronts {
		if serr := f.shutdown(sctx); serr != nil && err == nil {
			err = fmt.Errorf("shutting down: %w", serr)
		}
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

func (s *Server) httpServer() *http.Server {
	return &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 60 * time.Second,
		IdleTimeout:       s.opts.IdleTimeout,
		MaxHeaderBytes:    s.opts.MaxHeaderBytes,
		Protocols:         new(http.Protocols),
		ErrorLog:          log.New(klogWriter{}, "", 0),
	}
}

// klogWriter sends net/http's log lines (TLS handshake errors of scanners and the
// like) to klog at -v=4.
type klogWriter struct{}

func (klogWriter) Write(p []byte) (int, error) {
	klog.V(4).InfoS("http server", "message", string(p))
	return len(p), nil
}

// bufferPool recycles ReverseProxy's copy buffers.
type bufferPool struct{}

var buffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (bufferPool) Get() []byte  { return *buffers.Get().(*[]byte) }
func (bufferPool) Put(b []byte) { buffers.Put(&b) }
