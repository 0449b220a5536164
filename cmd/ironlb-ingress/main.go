// Command ironlb-ingress is ironlb's Ingress controller: it serves the Ingresses of its
// IngressClass (controller ironlb.io/ingress) on one HTTP and one HTTPS port, behind a
// LoadBalancer Service whose address it writes into every Ingress's status
// (--publish-service).
//
//	ironlb-ingress [--kubeconfig=F] [--ingress-class=ironlb] [--publish-service=NS/NAME]
//	    [--http-addr=:80] [--https-addr=:443] [--metrics-addr=:10254]
//	    [--default-certificate=NS/NAME] [--trusted-proxies=CIDR,...]
//	    [--balancing=round-robin|least-requests] [--shutdown-delay=5s] [--profiling] [-v=N]
//
// The metrics address serves /metrics (ironlb_ingress_*), /healthz (the process runs)
// and /readyz (a routing table was built from complete caches), and with --profiling
// also Go's profiles under /debug/pprof/ (net/http/pprof).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/ironlb/ironlb/ingress/controller"
	"github.com/ironlb/ironlb/ingress/server"
	"github.com/ironlb/ironlb/internal/kubeclient"
	"github.com/ironlb/ironlb/internal/pprofmux"
)

func main() {
	klog.InitFlags(nil)
	var (
		kubeconfig     = flag.String("kubeconfig", "", "kubeconfig file; empty: in-cluster configuration")
		ingressClass   = flag.String("ingress-class", controller.DefaultIngressClass, "name of the IngressClass served (its spec.controller must be "+controller.ControllerName+")")
		publishService = flag.String("publish-service", "", "namespace/name of the LoadBalancer Service in front of this controller; its address is written into the status of every handled Ingress")
		httpAddr       = flag.String("http-addr", ":80", "address of the plain-HTTP listener (HTTP/1.1 and h2c); \"-\" disables it")
		httpsAddr      = flag.String("https-addr", ":443", "address of the HTTPS listener (HTTP/1.1 and HTTP/2); \"-\" disables it")
		metricsAddr    = flag.String("metrics-addr", ":10254", "address serving /metrics, /healthz and /readyz; empty disables it")
		defaultCert    = flag.String("default-certificate", "", "namespace/name of a kubernetes.io/tls Secret for TLS clients whose server name matches no host; empty: a generated self-signed certificate")
		trusted        = flag.String("trusted-proxies", "", "comma list of CIDRs whose X-Forwarded-For/-Proto/-Host/-Port are believed; empty: none")
		balancing      = flag.String("balancing", "round-robin", "endpoint choice: round-robin or least-requests")
		shutdownDelay  = flag.Duration("shutdown-delay", 5*time.Second, "after SIGTERM, keep accepting connections this long (while load balancers drop this Pod), then drain requests in flight for up to 25s")
		profiling      = flag.Bool("profiling", false, "serve Go's profiles (net/http/pprof) under /debug/pprof/ on the metrics address")
	)
	flag.Parse()
	if err := run(*kubeconfig, *ingressClass, *publishService, *httpAddr, *httpsAddr, *metricsAddr, *defaultCert, *trusted, *balancing, *shutdownDelay, *profiling); err != nil {
		klog.ErrorS(err, "ironlb-ingress failed")
		klog.FlushAndExit(klog.ExitFlushTimeout, 1)
	}
	klog.Flush()
}

func run(kubeconfig, ingressClass, publishService, httpAddr, httpsAddr, metricsAddr, defaultCert, trusted, balancing string, shutdownDelay time.Duration, profiling bool) error {
	var proxies []netip.Prefix
	for f := range strings.SplitSeq(trusted, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return fmt.Errorf("--trusted-proxies: %w", err)
		}
		proxies = append(proxies, p.Masked())
	}
	var lb server.Balancing
	switch balancing {
	case "round-robin":
		lb = server.RoundRobin
	case "least-requests":
		lb = server.LeastRequests
	default:
		return fmt.Errorf("--balancing=%q: want round-robin or least-requests", balancing)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	cfg.UserAgent = "ironlb-ingress"
	client, err := kubernetes.NewForConfig(kubeclient.Builtin(cfg))
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	srv, err := server.New(server.Options{HTTPAddr: httpAddr, HTTPSAddr: httpsAddr, TrustedProxies: proxies,
		Balancing: lb, Metrics: server.NewMetrics(reg), ShutdownDelay: shutdownDelay})
	if err != nil {
		return err
	}
	ctrl, err := controller.New(controller.Config{Client: client, Sink: srv, IngressClass: ingressClass,
		PublishService: publishService, DefaultCertificate: defaultCert})
	if err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	srvDone := make(chan error, 1)
	errc := make(chan error, 2)
	go func() { srvDone <- srv.ListenAndServe(ctx) }()
	go func() { errc <- ctrl.Run(ctx) }()
	if metricsAddr != "" {
		go func() {
			errc <- serveMetrics(ctx, metricsAddr, reg, profiling, func() bool { return srv.Ready() && ctrl.Synced() })
		}()
	}
	klog.InfoS("ironlb-ingress started", "class", ingressClass, "http", httpAddr, "https", httpsAddr, "publishService", publishService)
	select {
	case err = <-srvDone:
		stop()
	case err = <-errc:
		// The proxy keeps serving requests in flight until Serve's shutdown ends.
		stop()
		if serr := <-srvDone; err == nil || errors.Is(err, context.Canceled) {
			err = serr
		}
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

func serveMetrics(ctx context.Context, addr string, reg *prometheus.Registry, profiling bool, ready func() bool) error {
	mux := http.NewServeMux()
	if profiling {
		pprofmux.Register(mux)
	}
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready() {
			http.Error(w, "no routing table yet", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok"))
	})
	hs := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
	}()
	if err := hs.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("metrics server: %w", err)
	}
	return nil
}
