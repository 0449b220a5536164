package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
)

// healthServer answers the healthCheckNodePort of every Service with
// externalTrafficPolicy Local: 200 when this node has a ready local endpoint
// and the proxy is healthy, else 503, with the JSON body kube-proxy serves.
// Load balancers use it to send traffic only to nodes that can serve it.
type healthServer struct {
	listen  func(ctx context.Context, network, addr string) (net.Listener, error)
	healthy func() bool

	mu        sync.Mutex
	servers   map[types.NamespacedName]*hcInstance
	endpoints map[types.NamespacedName]int
}

type hcInstance struct {
	port uint16
	srv  *http.Server
}

func newHealthServer(listen func(ctx context.Context, network, addr string) (net.Listener, error), healthy func() bool) *healthServer {
	if listen == nil {
		var lc net.ListenConfig
		listen = lc.Listen
	}
	return &healthServer{listen: listen, healthy: healthy,
		servers: map[types.NamespacedName]*hcInstance{}, endpoints: map[types.NamespacedName]int{}}
}

// hcBody is the JSON kube-proxy answers on a health check node port.
type hcBody struct {
	Service struct {
		Namespace string `json:"namespace"`
		Name      string `json:"name"`
	} `json:"service"`
	LocalEndpoints      int  `json:"localEndpoints"`
	ServiceProxyHealthy bool `json:"serviceProxyHealthy"`
}

func (h *healthServer) handler(name types.NamespacedName) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		h.mu.Lock()
		n := h.endpoints[name]
		h.mu.Unlock()
		healthy := h.healthy()
		var body hcBody
		body.Service.Namespace, body.Service.Name = name.Namespace, name.Name
		body.LocalEndpoints, body.ServiceProxyHealthy = n, healthy
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("X-Load-Balancing-Endpoint-Weight", strconv.Itoa(n))
		if n > 0 && healthy {
			w.WriteHeader(http.StatusOK)
		} else {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(body)
	})
}

// sync opens a listener for every Service port in ports that has none (or a
// different port), closes the others, and records local endpoint counts.
func (h *healthServer) sync(ctx context.Context, ports map[types.NamespacedName]uint16, local map[types.NamespacedName]int) {
	h.mu.Lock()
	h.endpoints = local
	var closing []*http.Server
	for n, s := range h.servers {
		if p, ok := ports[n]; !ok || p != s.port {
			closing = append(closing, s.srv)
			delete(h.servers, n)
		}
	}
	var opening []types.NamespacedName
	for n := range ports {
		if _, ok := h.servers[n]; !ok {
			opening = append(opening, n)
		}
	}
	h.mu.Unlock()
	for _, s := range closing {
		_ = s.Close()
	}
	for _, n := range opening {
		port := ports[n]
		ln, err := h.listen(ctx, "tcp", net.JoinHostPort("", strconv.Itoa(int(port))))
		if err != nil {
			klog.ErrorS(err, "Cannot open health check node port", "service", n, "port", port)
			continue
		}
		srv := &http.Server{Handler: h.handler(n), ReadHeaderTimeout: 5 * time.Second}
		h.mu.Lock()
		h.servers[n] = &hcInstance{port: port, srv: srv}
		h.mu.Unlock()
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				klog.ErrorS(err, "Health check server stopped", "service", n, "port", port)
			}
		}()
	}
}

// close stops every health check server.
func (h *healthServer) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for n, s := range h.servers {
		_ = s.srv.Close()
		delete(h.servers, n)
	}
}

// ports returns the ports being served (for tests and metrics).
func (h *healthServer) ports() map[types.NamespacedName]uint16 {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[types.NamespacedName]uint16{}
	for n, s := range h.servers {
		out[n] = s.port
	}
	return out
}
