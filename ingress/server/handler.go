package server

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"path"
	"strings"
	"time"

	"github.com/ironlb/ironlb/ingress"
)

// acmePrefix is never redirected to https, so HTTP-01 challenges (cert-manager) pass,
// as ingress-nginx's no-tls-redirect-locations default.
const acmePrefix = "/.well-known/acme-challenge/"

// ServeHTTP routes and proxies one request with the current Table. In order: 413 for a
// Content-Length over proxy-body-size, 503 for an Ingress whose access annotations did
// not parse, 308 to https (ssl-redirect, force-ssl-redirect), 403 outside
// whitelist-source-range, then the canary choice, 503 without ready endpoints, and
// the proxied response (502 when no endpoint could be reached, 504 on
// proxy-read-timeout).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &statusRecorder{ResponseWriter: w}
	st := s.cur.Load()
	if st == nil {
		http.Error(rec, "ironlb-ingress has no configuration yet", http.StatusServiceUnavailable)
		s.opts.Metrics.request("", "", rec.code, time.Since(start))
		return
	}
	p := cleanPath(r.URL.Path)
	route := st.table.Route(r.Host, p)
	ing, svc := "", ""
	if route != nil {
		ing = route.Ingress
	}
	defer func() { s.opts.Metrics.request(ing, svc, rec.status(), time.Since(start)) }()
	if route == nil {
		http.Error(rec, "404 page not found", http.StatusNotFound)
		return
	}
	o := route.Options
	limit := o.MaxBodyBytes
	if limit < 0 {
		limit = s.opts.MaxBodyBytes
	}
	if limit > 0 && r.ContentLength > limit {
		http.Error(rec, "413 request entity too large", http.StatusRequestEntityTooLarge)
		return
	}
	if o.Denied {
		http.Error(rec, "503 service unavailable", http.StatusServiceUnavailable)
		return
	}
	cl := clientOf(r, s.opts.TrustedProxies)
	if cl.proto == "http" && !strings.HasPrefix(p, acmePrefix) &&
		(o.ForceSSLRedirect || (o.SSLRedirect && st.table.HasTLS(r.Host))) {
		redirectHTTPS(rec, r)
		return
	}
	if len(o.AllowSourceRange) > 0 && !trustedPeer(o.AllowSourceRange, cl.ip) {
		http.Error(rec, "403 forbidden", http.StatusForbidden)
		return
	}
	up := route.Upstream
	if route.Canary != nil && route.CanaryPolicy.Choose(r, rand.IntN) {
		up = route.Canary
	}
	svc = up.Service.Namespace + "/" + up.Service.Name
	pl := st.pools[up]
	if pl == nil || len(pl.eps) == 0 {
		http.Error(rec, "503 service unavailable: no ready endpoint", http.StatusServiceUnavailable)
		return
	}
	idle := o.ReadTimeout
	if idle <= 0 {
		idle = s.opts.ReadTimeout
	}
	c := &call{s: s, pool: pl, route: route, scheme: "http", client: cl, path: p, idle: idle}
	if o.BackendProtocol == ingress.ProtocolHTTP && direct(r) {
		s.forward(rec, r, c)
		return
	}
	c.base = s.transport(o.BackendProtocol, idle)
	if o.BackendProtocol == ingress.ProtocolHTTPS || o.BackendProtocol == ingress.ProtocolGRPCS {
		c.scheme = "https"
	}
	if limit > 0 && r.Body != nil && r.Body != http.NoBody {
		r.Body = &limitedBody{ReadCloser: r.Body, left: limit, c: c}
	}
	s.proxy.ServeHTTP(rec, r.WithContext(context.WithValue(r.Context(), callKey{}, c)))
	if c.upgraded && rec.code == 0 {
		rec.code = http.StatusSwitchingProtocols
	}
}

// rewrite prepares the request to the backend: rewrite-target, X-Forwarded-*. The
// Host header is the client's, as in ingress-nginx.
func (s *Server) rewrite(pr *httputil.ProxyRequest) {
	c := pr.In.Context().Value(callKey{}).(*call)
	if np, nq, ok := c.route.Rewrite(c.path, pr.In.URL.RawQuery); ok {
		pr.Out.URL.Path, pr.Out.URL.RawPath, pr.Out.URL.RawQuery = np, "", nq
	}
	setForwarded(pr.Out.Header, &c.client)
}

// proxyError answers a request that could not be proxied.
func (s *Server) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	c, _ := r.Context().Value(callKey{}).(*call)
	var ne net.Error
	switch {
	case c != nil && c.tooLarge.Load():
		http.Error(w, "413 request entity too large", http.StatusRequestEntityTooLarge)
	case r.Context().Err() != nil:
		// The client went away; nginx logs 499 for this.
		if rec, ok := w.(*statusRecorder); ok {
			rec.code = 499
		}
	case errors.Is(err, errNoEndpoint):
		http.Error(w, "503 service unavailable: no ready endpoint", http.StatusServiceUnavailable)
	case errors.As(err, &ne) && ne.Timeout():
		http.Error(w, "504 gateway timeout", http.StatusGatewayTimeout)
	default:
		http.Error(w, "502 bad gateway", http.StatusBadGateway)
	}
}

func redirectHTTPS(w http.ResponseWriter, r *http.Request) {
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
		if strings.Contains(h, ":") {
			host = "[" + h + "]"
		}
	}
	w.Header().Set("Location", "https://"+host+r.URL.RequestURI())
	w.WriteHeader(http.StatusPermanentRedirect)
}

// cleanPath is the path routing sees: "." and ".." resolved and slashes merged (as
// nginx's normalised $uri), a trailing slash kept. The request is forwarded with its
// original path unless rewrite-target applies.
func cleanPath(p string) string {
	if p == "" || p[0] != '/' {
		p = "/" + p
	}
	if !strings.Contains(p, "//") && !strings.Contains(p, "/.") {
		return p
	}
	np := path.Clean(p)
	if strings.HasSuffix(p, "/") && np != "/" {
		np += "/"
	}
	return np
}

// statusRecorder remembers the status code for metrics. Flush and Hijack reach the
// underlying writer through Unwrap (http.ResponseController).
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (w *statusRecorder) WriteHeader(code int) {
	if w.code == 0 && code >= 200 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusRecorder) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

func (w *statusRecorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusRecorder) status() int {
	if w.code == 0 {
		return http.StatusOK
	}
	return w.code
}
