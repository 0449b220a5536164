// Command ironlb-speaker is ironlb's node agent (a DaemonSet with hostNetwork):
// it announces the LoadBalancer addresses the controller allocated, by ARP/NDP
// from one elected node (layer 2) or by BGP from every eligible node, and
// records what it announces in ServiceAnnouncement and BGPSession objects.
// See package speaker for how, and deploy/speaker for how it is installed.
//
// Flags: --node-name (default $NODE_NAME), --node-ip (default the Node's
// InternalIP), --memberlist-port, --memberlist-secret-file, --proxy=none|iptables
// (iptables: package proxy programs ClusterIPs, NodePorts and VIPs in place of
// kube-proxy; with --cluster-cidr), --metrics-addr, --cleanup, --namespace (default
// $POD_NAMESPACE), --lb-class, --l2-handover-window (package speaker/handover),
// --address-event-qps, --profiling (Go's profiles, net/http/pprof, under
// /debug/pprof/ on the metrics address), --kubeconfig, -v.
//
// SIGTERM hands the addresses over (leave, grace period) before exiting; a
// second signal exits at once.
package main

import (
	"context"
	"errors"
	goflag "flag"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/ironlb/ironlb/internal/kubeclient"
	"github.com/ironlb/ironlb/internal/pprofmux"
	"github.com/ironlb/ironlb/proxy"
	"github.com/ironlb/ironlb/proxy/iptables"
	"github.com/ironlb/ironlb/speaker"
	"github.com/ironlb/ironlb/speaker/handover"
	"github.com/ironlb/ironlb/speaker/membership"
)

type options struct {
	nodeName       string
	nodeIP         string
	memberlistPort int
	secretFile     string
	proxy          string
	metricsAddr    string
	cleanup        bool
	namespace      string
	lbClass        string
	kubeconfig     string
	clusterCIDRs   []string
	handover       time.Duration
	eventQPS       float32
	profiling      bool
}

func main() {
	o := options{}
	cmd := &cobra.Command{
		Use:          "ironlb-speaker",
		Short:        "ironlb-speaker announces LoadBalancer addresses from this node (ARP/NDP or BGP).",
		SilenceUsage: true,
		Args:         cobra.NoArgs,
		RunE:         func(cmd *cobra.Command, _ []string) error { return run(cmd.Context(), o) },
	}
	fs := cmd.Flags()
	fs.StringVar(&o.nodeName, "node-name", os.Getenv("NODE_NAME"), "this Node's name (default $NODE_NAME)")
	fs.StringVar(&o.nodeIP, "node-ip", "", "address memberlist listens on and peers reach (default: the Node's InternalIP)")
	fs.IntVar(&o.memberlistPort, "memberlist-port", membership.DefaultPort, "memberlist UDP and TCP port, the same on every node")
	fs.StringVar(&o.secretFile, "memberlist-secret-file", "", "file with the shared secret that encrypts memberlist (at least 16 bytes; e.g. a mounted Secret); empty: plain text")
	fs.StringVar(&o.proxy, "proxy", "none", "service proxy run in this process: none (beside kube-proxy) or iptables (instead of kube-proxy)")
	fs.StringSliceVar(&o.clusterCIDRs, "cluster-cidr", nil, "with --proxy=iptables: the pod networks (one per family); traffic to ClusterIPs from outside them is masqueraded, as kube-proxy's --cluster-cidr")
	fs.StringVar(&o.metricsAddr, "metrics-addr", ":7473", "plain-HTTP address of /metrics, /healthz and /readyz; empty disables")
	fs.BoolVar(&o.cleanup, "cleanup", false, "remove what this node's speaker left behind (the proxy's IRONLB-* iptables chains and rules, the handover forwarding's rules and routes, its ServiceAnnouncements and BGPSessions) and exit")
	fs.StringVar(&o.namespace, "namespace", envOr("POD_NAMESPACE", speaker.DefaultNamespace), "the speaker's namespace: BGP password Secrets are read here only (default $POD_NAMESPACE)")
	fs.StringVar(&o.lbClass, "lb-class", speaker.DefaultLoadBalancerClass, "spec.loadBalancerClass served besides unset")
	fs.DurationVar(&o.handover, "l2-handover-window", handover.DefaultWindow, "after taking an L2 address over from a speaker that left (a planned restart), forward for this long the TCP connections this node does not know to the old node, whose kernel still carries them; 0 disables")
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file; empty: in-cluster configuration")
	fs.Float32Var(&o.eventQPS, "address-event-qps", speaker.DefaultAddressEventQPS, "per-address BGP Events (Advertising, Withdrawn) recorded per second at most, bursts of 10 times that; beyond it they are skipped and counted (BGPSessions list the prefixes); 0: none")
	fs.BoolVar(&o.profiling, "profiling", false, "serve Go's profiles (net/http/pprof) under /debug/pprof/ on the metrics address")
	klogFlags := goflag.NewFlagSet("klog", goflag.ExitOnError)
	klog.InitFlags(klogFlags)
	fs.AddGoFlagSet(klogFlags)

	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		sig := <-sigs
		klog.InfoS("Stopping: handing over", "signal", sig)
		cancel()
		sig = <-sigs
		klog.InfoS("Second signal: exiting now", "signal", sig)
		klog.FlushAndExit(klog.ExitFlushTimeout, 1)
	}()
	err := cmd.ExecuteContext(ctx)
	klog.Flush()
	if err != nil {
		os.Exit(1)
	}
}

// addressEventQPS maps the flag's 0 (none) to Config's negative.
func addressEventQPS(flag float32) float32 {
	if flag <= 0 {
		return -1
	}
	return flag
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func run(ctx context.Context, o options) error {
	if o.nodeName == "" {
		return errors.New("--node-name (or $NODE_NAME) is required")
	}
	if o.proxy != "none" && o.proxy != "iptables" {
		return fmt.Errorf("--proxy=%q: want none or iptables", o.proxy)
	}
	var cidrs []netip.Prefix
	for _, c := range o.clusterCIDRs {
		p, err := netip.ParsePrefix(c)
		if err != nil {
			return fmt.Errorf("--cluster-cidr: %w", err)
		}
		cidrs = append(cidrs, p.Masked())
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", o.kubeconfig)
	if err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	cfg.UserAgent = "ironlb-speaker/" + o.nodeName
	client, err := kubernetes.NewForConfig(kubeclient.Builtin(cfg))
	if err != nil {
		return err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	if o.cleanup {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		var ipts []iptables.Interface
		for _, f := range []iptables.Family{iptables.IPv4, iptables.IPv6} {
			ipts = append(ipts, iptables.NewExec(f))
		}
		err := errors.Join(proxy.Cleanup(cctx, ipts...), handover.Cleanup(cctx, handover.Config{}), speaker.Cleanup(cctx, dyn, o.nodeName))
		if err != nil {
			return fmt.Errorf("cleanup: %w", err)
		}
		klog.InfoS("Cleaned up", "node", o.nodeName)
		return nil
	}
	var nodeIP netip.Addr
	if o.nodeIP != "" {
		if nodeIP, err = netip.ParseAddr(o.nodeIP); err != nil {
			return fmt.Errorf("--node-ip: %w", err)
		}
	}
	var key []byte
	if o.secretFile != "" {
		if key, err = membership.ReadKeyFile(o.secretFile); err != nil {
			return fmt.Errorf("--memberlist-secret-file: %w", err)
		}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	var px *proxy.Proxier
	if o.proxy == "iptables" {
		pc := proxy.Config{NodeName: o.nodeName, ClusterCIDRs: cidrs, Registerer: reg}
		if nodeIP.IsValid() {
			pc.NodeIPs = []netip.Addr{nodeIP}
		}
		if px, err = proxy.New(pc); err != nil {
			return fmt.Errorf("--proxy=iptables: %w", err)
		}
	}
	var hf *handover.Forwarder
	if o.handover > 0 {
		if hf, err = handover.New(handover.Config{Window: o.handover, Registerer: reg}); err != nil {
			return fmt.Errorf("--l2-handover-window: %w", err)
		}
	}
	s, err := speaker.New(speaker.Config{
		NodeName: o.nodeName, NodeIP: nodeIP, Namespace: o.namespace,
		MemberlistPort: o.memberlistPort, MemberlistKey: key, LoadBalancerClass: o.lbClass,
		Client: client, Dynamic: dyn, Registerer: reg, Proxy: px, Handover: hf,
		AddressEventQPS: addressEventQPS(o.eventQPS),
	})
	if err != nil {
		return err
	}
	if o.metricsAddr != "" {
		srv := serveMetrics(o.metricsAddr, metricsHandler(reg, s.Ready, o.profiling))
		defer srv.Close()
	}
	return s.Run(ctx)
}

// metricsHandler serves /metrics, /healthz and /readyz (ready's error is the
// body of a 503), and with profiling Go's profiles under /debug/pprof/: they
// cost nothing until asked, but a CPU profile or trace slows the speaker while
// it runs, so they are off unless the operator asks for them.
func metricsHandler(reg *prometheus.Registry, ready func() error, profiling bool) http.Handler {
	mux := http.NewServeMux()
	if profiling {
		pprofmux.Register(mux)
	}
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := ready(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok"))
	})
	return mux
}

func serveMetrics(addr string, handler http.Handler) *http.Server {
	srv := &http.Server{Addr: addr, Handler: handler, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		klog.InfoS("Serving metrics", "addr", addr)
		if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			klog.ErrorS(err, "Metrics server stopped", "addr", addr)
		}
	}()
	return srv
}
