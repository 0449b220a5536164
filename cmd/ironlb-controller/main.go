// Command ironlb-controller is ironlb's allocator: a cloud-controller-manager
// (k8s.io/cloud-provider/app) with cloud provider "ironlb" whose only controller is
// ironlb's Service controller (LoadBalancer Services with spec.loadBalancerClass unset
// or ironlb.io/lb; other classes are never touched).
//
// Leader election is ironlb's own wrapper around the cloud-controller-manager so that
// a SIGTERM hands the lease over: the controllers stop, the syncs in flight finish,
// then the lease is released and the next replica (or the restarted process) takes
// over at once instead of waiting for the lease to expire.
//
// All cloud-controller-manager flags apply (--kubeconfig, --leader-elect-*,
// --secure-port, --concurrent-service-syncs, --kube-api-qps, -v ...), with defaults
// chosen for throughput: 16 concurrent Service syncs (each makes at most one API
// write), a client-side limit of 500 QPS (the bound that matters is the number of
// syncs in flight; the API server protects itself with API Priority and Fairness),
// and a 500 ms leader-election retry period so that a crashed leader is replaced
// within the lease duration plus about a second. ironlb adds --lb-class,
// --serve-classless and --metrics-addr.
package main

import (
	"context"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/uuid"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	cloudprovider "k8s.io/cloud-provider"
	"k8s.io/cloud-provider/app"
	"k8s.io/cloud-provider/app/config"
	"k8s.io/cloud-provider/names"
	"k8s.io/cloud-provider/options"
	"k8s.io/component-base/cli"
	cliflag "k8s.io/component-base/cli/flag"
	"k8s.io/component-base/cli/globalflag"
	"k8s.io/component-base/logs"
	logsapi "k8s.io/component-base/logs/api/v1"
	_ "k8s.io/component-base/logs/json/register"
	"k8s.io/component-base/version/verflag"
	genericcontrollermanager "k8s.io/controller-manager/app"
	"k8s.io/controller-manager/controller"
	"k8s.io/klog/v2"

	"github.com/ironlb/ironlb/allocator/provider"
)

// serviceControllerName is the --controllers name of ironlb's Service controller.
const serviceControllerName = "ironlb-service-controller"

// drainTimeout bounds how long a SIGTERM waits for syncs in flight before the lease
// is released anyway.
const drainTimeout = 10 * time.Second

type flags struct {
	eventQPS       float32
	lbClass        string
	serveClassless bool
	metricsAddr    string
}

func main() {
	opts, err := options.NewCloudControllerManagerOptions()
	if err != nil {
		klog.Fatalf("initializing options: %v", err)
	}
	opts.KubeCloudShared.CloudProvider.Name = provider.ProviderName
	opts.KubeCloudShared.ConfigureCloudRoutes = false
	opts.Generic.LeaderElection.ResourceName = "ironlb-controller"
	opts.Generic.LeaderElection.ResourceNamespace = "ironlb-system"
	opts.Generic.LeaderElection.RetryPeriod = metav1.Duration{Duration: 500 * time.Millisecond}
	opts.Generic.ClientConnection.QPS = 500
	opts.Generic.ClientConnection.Burst = 1000
	opts.ServiceController.ConcurrentServiceSyncs = 16

	var f flags
	fss := cliflag.NamedFlagSets{}
	fs := fss.FlagSet("ironlb")
	fs.StringVar(&f.lbClass, "lb-class", provider.DefaultLoadBalancerClass,
		"spec.loadBalancerClass served besides unset; Services of other classes are left alone")
	fs.BoolVar(&f.serveClassless, "serve-classless", true,
		"serve LoadBalancer Services without spec.loadBalancerClass (ironlb is the cluster's default provider)")
	fs.Float32Var(&f.eventQPS, "event-qps", 10,
		"Events written per second at most (bursts of twice that); during a burst of Services they trail the status writes, queued, not dropped")
	fs.StringVar(&f.metricsAddr, "metrics-addr", ":7472",
		"plain-HTTP address serving Prometheus metrics on /metrics and /healthz, /readyz; empty disables")

	os.Exit(cli.Run(newCommand(opts, fss, &f)))
}

// newCommand mirrors app.NewCloudControllerManagerCommand (same flags, same
// configuration) with ironlb's controller set and leader election.
func newCommand(opts *options.CloudControllerManagerOptions, extra cliflag.NamedFlagSets, f *flags) *cobra.Command {
	logOptions := logs.NewOptions()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := provider.NewMetrics(reg)

	started := make(chan *provider.ServiceController, 1)
	constructors := map[string]app.ControllerInitFuncConstructor{
		serviceControllerName: {
			InitContext: app.ControllerInitContext{ClientName: "ironlb-service-controller"},
			Constructor: func(ic app.ControllerInitContext, cfg *config.CompletedConfig, cloud cloudprovider.Interface) app.InitFunc {
				return func(ctx context.Context, _ genericcontrollermanager.ControllerContext) (controller.Interface, bool, error) {
					c := cloud.(*provider.Cloud)
					sc, err := provider.NewServiceController(c, cfg.ClientBuilder.ClientOrDie(ic.ClientName), cfg.SharedInformers.Core().V1().Services())
					if err != nil {
						return nil, false, err
					}
					go sc.Run(ctx, int(cfg.ComponentConfig.ServiceController.ConcurrentServiceSyncs))
					started <- sc
					return nil, true, nil
				}
			},
		},
	}
	controllerNames := app.ControllerNames(constructors)

	cmd := &cobra.Command{
		Use:  "ironlb-controller",
		Long: "ironlb-controller assigns external IPs from IPPools to LoadBalancer Services (cloud provider \"ironlb\").",
		RunE: func(cmd *cobra.Command, _ []string) error {
			verflag.PrintAndExitIfRequested()
			if err := logsapi.ValidateAndApply(logOptions, utilfeature.DefaultFeatureGate); err != nil {
				return err
			}
			cliflag.PrintFlags(cmd.Flags())
			c, err := opts.Config(controllerNames, app.ControllersDisabledByDefault.List(), names.CCMControllerAliases(), app.AllWebhooks, app.DisabledByDefaultWebhooks)
			if err != nil {
				return err
			}
			completed := c.Complete()
			if name := completed.ComponentConfig.KubeCloudShared.CloudProvider.Name; name != provider.ProviderName {
				klog.Fatalf("--cloud-provider=%q: ironlb-controller only runs the %q provider", name, provider.ProviderName)
			}
			cloud := provider.New(provider.Options{LoadBalancerClass: f.lbClass, IgnoreClassless: !f.serveClassless, EventQPS: f.eventQPS, Metrics: metrics})
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			// Warm caches while waiting for the lease: a takeover then costs the
			// lease, not a List of every Service.
			dyn, err := dynamic.NewForConfig(completed.Kubeconfig)
			if err != nil {
				return err
			}
			cloud.Prewarm(ctx, dyn, completed.SharedInformers)
			r := &runner{cfg: completed, cloud: cloud, started: started, leading: make(chan struct{}),
				initializers: app.ConstructControllerInitializers(constructors, completed, cloud)}
			if f.metricsAddr != "" {
				go serveMetrics(f.metricsAddr, reg, r)
			}
			return r.run(ctx)
		},
		Args: cobra.NoArgs,
	}
	namedFlagSets := opts.Flags(controllerNames, app.ControllersDisabledByDefault.List(), names.CCMControllerAliases(), app.AllWebhooks, app.DisabledByDefaultWebhooks)
	global := namedFlagSets.FlagSet("global")
	verflag.AddFlags(global)
	logsapi.AddFlags(logOptions, global)
	globalflag.AddGlobalFlags(global, cmd.Name(), logs.SkipLoggingConfigurationFlags())
	for _, sets := range []cliflag.NamedFlagSets{namedFlagSets, extra} {
		for _, name := range sets.Order {
			cmd.Flags().AddFlagSet(sets.FlagSets[name])
		}
	}
	return cmd
}

// runner runs the cloud-controller-manager while this process holds the lease.
type runner struct {
	cfg          *config.CompletedConfig
	cloud        *provider.Cloud
	initializers map[string]app.InitFunc
	started      chan *provider.ServiceController

	leading chan struct{} // closed once this process leads
}

// runControllers runs the cloud-controller-manager (cloud provider, informers, our
// controller) until ctx ends, then waits for the syncs in flight.
func (r *runner) runControllers(ctx context.Context) {
	go func() {
		if err := app.Run(r.cfg, r.cloud, r.initializers, map[string]app.WebhookHandler{}, ctx.Done()); err != nil {
			klog.ErrorS(err, "Cloud controller manager stopped")
		}
	}()
	<-ctx.Done()
	select {
	case sc := <-r.started:
		select {
		case <-sc.Done():
			klog.InfoS("Service controller drained")
		case <-time.After(drainTimeout):
			klog.InfoS("Syncs still in flight after the drain timeout; stepping down anyway", "timeout", drainTimeout)
		}
	default: // the controller never started
	}
}

func (r *runner) run(ctx context.Context) error {
	le := r.cfg.ComponentConfig.Generic.LeaderElection
	// app.Run must not elect on its own: ironlb elects around it (below), so that a
	// SIGTERM releases the lease after the controller has drained.
	r.cfg.ComponentConfig.Generic.LeaderElection.LeaderElect = false
	if !le.LeaderElect {
		close(r.leading)
		r.runControllers(ctx)
		return nil
	}
	id, err := os.Hostname()
	if err != nil {
		return err
	}
	id += "_" + string(uuid.NewUUID())
	lock, err := resourcelock.NewFromKubeconfig(le.ResourceLock, le.ResourceNamespace, le.ResourceName,
		resourcelock.ResourceLockConfig{Identity: id, EventRecorder: r.cfg.EventRecorder}, r.cfg.Kubeconfig, le.RenewDeadline.Duration)
	if err != nil {
		return err
	}
	electCtx, stopElecting := context.WithCancel(context.Background())
	defer stopElecting()
	leaderelection.RunOrDie(electCtx, leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   le.LeaseDuration.Duration,
		RenewDeadline:   le.RenewDeadline.Duration,
		RetryPeriod:     le.RetryPeriod.Duration,
		ReleaseOnCancel: true,
		Name:            le.ResourceName,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(leadCtx context.Context) {
				klog.InfoS("Leading", "lease", le.ResourceNamespace+"/"+le.ResourceName, "identity", id)
				close(r.leading)
				work, cancel := context.WithCancel(leadCtx)
				defer cancel()
				stopOnSignal := context.AfterFunc(ctx, cancel)
				defer stopOnSignal()
				r.runControllers(work)
				stopElecting() // releases the lease (ReleaseOnCancel)
			},
			OnStoppedLeading: func() {
				if ctx.Err() == nil {
					klog.ErrorS(nil, "Lost the lease; exiting")
					klog.FlushAndExit(klog.ExitFlushTimeout, 1)
				}
				klog.InfoS("Lease released", "lease", le.ResourceNamespace+"/"+le.ResourceName)
			},
		},
	})
	return nil
}

// isReady: a standby is ready (it waits for the lease); the leader once the
// allocator has been rebuilt.
func (r *runner) isReady() bool {
	select {
	case <-r.leading:
	default:
		return true
	}
	select {
	case <-r.cloud.Ready():
		return true
	default:
		return false
	}
}

func serveMetrics(addr string, reg *prometheus.Registry, r *runner) {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !r.isReady() {
			http.Error(w, "leading, allocator not rebuilt yet", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok"))
	})
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	klog.InfoS("Serving metrics", "addr", addr)
	if err := srv.ListenAndServe(); err != nil {
		klog.ErrorS(err, "Metrics server stopped", "addr", addr)
	}
}
