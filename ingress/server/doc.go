// Package server is the HTTP(S) shell of ironlb-ingress: a reverse proxy on net/http
// and crypto/tls that serves the routing Table of package ingress most recently given
// to Update.
//
// Typical use:
//
//	srv, err := server.New(server.Options{Metrics: server.NewMetrics(reg)})
//	go srv.ListenAndServe(ctx)   // :80 (HTTP/1.1, h2c) and :443 (HTTP/1.1, HTTP/2)
//	srv.Update(table)            // after every ingress.Build; 503 until the first
//
// # Reconfiguration
//
// Update publishes a Table with one atomic pointer store. A request reads the pointer
// once and keeps that Table (its route, its endpoints) to the end, so a swap never
// fails a request in flight; WebSockets and keep-alive connections do not belong to a
// Table at all and are never touched; TLS certificates are chosen per handshake
// (GetCertificate) from the current Table, so a rotated Secret is served from the next
// handshake on. Endpoint state (requests in flight, consecutive failures, ejection) is
// kept per address across Tables.
//
// # Requests
//
// A request is routed by its Host and its cleaned path ("." and ".." resolved,
// slashes merged, as nginx's $uri); it is forwarded with its original path unless a
// rewrite-target applies. Then, in order: 413 when Content-Length exceeds
// proxy-body-size (a chunked body is cut, and answered 413, when it grows past it:
// the body is streamed, not buffered as nginx does, so the backend may see the
// truncated start of such a request); 503 when an access annotation of the Ingress
// did not parse; 308 to https for plain-HTTP requests to a host with TLS
// (ssl-redirect, on by default) or with force-ssl-redirect, except under
// /.well-known/acme-challenge/; 403 for clients outside whitelist-source-range; the
// canary choice; 503 when the Service has no ready endpoint; the built-in 404 when no
// route matches.
//
// The backend gets the client's Host, and X-Forwarded-For, X-Real-Ip,
// X-Forwarded-Proto, -Host and -Port (and X-Scheme, X-Forwarded-Scheme, as
// ingress-nginx). Client-supplied values are replaced, unless the peer is in
// Options.TrustedProxies: then its X-Forwarded-For chain is extended, the client is the
// right-most address of the chain that is not itself trusted, and its -Proto, -Host
// and -Port are kept. whitelist-source-range and redirects use that client and scheme.
//
// # Backends
//
// Requests go to endpoint addresses directly, over keep-alive connections
// (MaxIdleConnsPerEndpoint idle ones per endpoint, closed after 60s unused or when
// the endpoint leaves the Table): HTTP/1.1 (HTTP), HTTP/1.1 over TLS (HTTPS), h2c
// (GRPC) or HTTP/2 over TLS (GRPCS); backend certificates are not verified
// (ingress-nginx's default). The common request, idempotent and without a body or an
// upgrade, to an HTTP backend is written and answered on the handler's own goroutine
// (the direct path, direct.go); the others go through net/http/httputil.ReverseProxy
// and one http.Transport per backend protocol and read timeout. Both behave alike.
// Upgrades (WebSocket) are passed through; 1xx answers, trailers and streaming bodies
// (gRPC, event streams) too. Endpoints are chosen by round robin or by least requests
// (the less busy of two random endpoints). A request that cannot connect (TCP or TLS)
// is sent to another endpoint whatever its method, since nothing was sent; one that
// fails after connecting is retried only when it is idempotent and has no body; at
// most MaxTries endpoints are tried (502 when none answers). A keep-alive connection
// the backend closed while it was idle is replaced without counting as a failure.
// FailureThreshold consecutive failures eject an endpoint for EjectFor; when every
// endpoint is ejected they are tried anyway. proxy-read-timeout bounds the wait for
// the response headers (504) and every gap between two reads of the body (the
// response is then cut; on the direct path the bound is between 15/16 of the timeout
// and the timeout); upgraded connections are not timed. A client that goes away ends
// its request to the backend.
//
// Request and response headers may be up to MaxHeaderBytes (1 MiB) in all; there is no
// per-header buffer to overflow.
//
// # Costs
//
// Per request: one atomic load, the route lookup of package ingress, one endpoint
// choice (O(1); O(endpoints) only while skipping tried or ejected ones), and on the
// direct path a header walk written straight into the connection's buffer, a parse of
// the response head (response.go: the common one, HTTP/1.1 with one Content-Length,
// into the connection's reused Response and header map; any other by
// net/http.ReadResponse) and a copy of its header map; the other
// path adds ReverseProxy's request clone and the Transport's hand-offs between
// goroutines.
//
// HTTP/1.1 connections (plain, and TLS ones that chose http/1.1) are first served by
// a fast path (fastpath.go): one goroutine per connection reads and parses each
// request head itself (a strict parser, fuzzed against net/http) and serves the
// direct-path requests (GET or HEAD without body, upgrade or Expect, to a plain-HTTP
// backend, without redirect, denial or canary) without net/http's server: no request
// or header map, no goroutine hand-off, no background read of the client per request
// (a client that goes away is watched for only once a request has taken 250ms, so
// its backend request is ended then, not at once as by net/http). Responses are
// framed and completed as net/http's server does (Content-Length or chunked, the
// sniffed Content-Type, the Date; a test compares what a client sees of both). The
// first other request hands the connection, with the bytes already read, to the
// http.Server, which serves it from then on exactly as before (HTTP/2 connections go
// to it after the handshake). Measured in the lab through a VIP under wrk
// (test/cmd/benchingress, a shared 2-core machine): about 27-32µs of CPU per
// plain-HTTP request (34-40µs before the response parse and the allocation cuts, 53µs
// with the direct path alone, 90µs before it), against 23-26µs for nginx 1.22 with
// the same routes, and 33-37µs per TLS request as nginx; about 3.8 read calls per
// request (4.6 before the fast path), nginx 0-2: Go reads a socket once before
// waiting for it, and finds it empty after every request and every response.
// Update is O(endpoints of the Table).
package server
