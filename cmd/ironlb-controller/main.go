// Command ironlb-controller is ironlb's allocator: a cloud-controller-manager
// (k8s.io/cloud-provider/app) with cloud provider "ironlb" that runs only the service
// controller (class-less LoadBalancer Services) and ironlb's class controller (Services
// with spec.loadBalancerClass=ironlb.io/lb, see --lb-class). Both are leader-elected
// (--leader-elect, on by default), so any number of replicas hand out each address once.
//
// All cloud-controller-manager flags apply (--kubeconfig, --leader-elect-*, --secure-port,
// --concurrent-service-syncs, -v ...). ironlb adds --lb-class and --metrics-addr.
package main

import (
	"context"
	"errors"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/apimachinery/pkg/util/wait"
	cloudprovider "k8s.io/cloud-provider"
	"k8s.io/cloud-provider/app"
	"k8s.io/cloud-provider/app/config"
	"k8s.io/cloud-provider/names"
	"k8s.io/cloud-provider/options"
	"k8s.io/component-base/cli"
	cliflag "k8s.io/component-base/cli/flag"
	_ "k8s.io/component-base/logs/json/register"
	genericcontrollermanager "k8s.io/controller-manager/app"
	"k8s.io/controller-manager/controller"
	"k8s.io/klog/v2"

	"github.com/ironlb/ironlb/allocator/provider"
)

// classControllerName is the --controllers name of the loadBalancerClass path.
const classControllerName = "ironlb-class-controller"

func main() {
	opts, err := options.NewCloudControllerManagerOptions()
	if err != nil {
		klog.Fatalf("initializing options: %v", err)
	}
	opts.KubeCloudShared.CloudProvider.Name = provider.ProviderName
	opts.KubeCloudShared.ConfigureCloudRoutes = false
	opts.Generic.LeaderElection.ResourceName = "ironlb-controller"

	var lbClass, metricsAddr string
	fss := cliflag.NamedFlagSets{}
	fs := fss.FlagSet("ironlb")
	fs.StringVar(&lbClass, "lb-class", provider.DefaultLoadBalancerClass,
		"spec.loadBalancerClass served besides unset; Services of other classes are left alone")
	fs.StringVar(&metricsAddr, "metrics-addr", ":7472",
		"plain-HTTP address serving Prometheus metrics (ironlb_allocator_*) on /metrics; empty disables")

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := provider.NewMetrics(reg)

	initCloud := func(cfg *config.CompletedConfig) cloudprovider.Interface {
		if name := cfg.ComponentConfig.KubeCloudShared.CloudProvider.Name; name != provider.ProviderName {
			klog.Fatalf("--cloud-provider=%q: ironlb-controller only runs the %q provider", name, provider.ProviderName)
		}
		if metricsAddr != "" {
			go serveMetrics(metricsAddr, reg)
		}
		return provider.New(provider.Options{LoadBalancerClass: lbClass, Metrics: metrics})
	}

	controllers := map[string]app.ControllerInitFuncConstructor{
		names.ServiceLBController: {
			InitContext: app.ControllerInitContext{ClientName: "ironlb-service-controller"},
			Constructor: app.StartServiceControllerWrapper,
		},
		classControllerName: {
			InitContext: app.ControllerInitContext{ClientName: "ironlb-class-controller"},
			Constructor: startClassController,
		},
	}
	cmd := app.NewCloudControllerManagerCommand(opts, initCloud, controllers, names.CCMControllerAliases(), fss, wait.NeverStop)
	cmd.Use = "ironlb-controller"
	cmd.Long = "ironlb-controller assigns external IPs from IPPools to LoadBalancer Services (cloud provider \"ironlb\")."
	os.Exit(cli.Run(cmd))
}

func startClassController(initCtx app.ControllerInitContext, cfg *config.CompletedConfig, cloud cloudprovider.Interface) app.InitFunc {
	return func(ctx context.Context, _ genericcontrollermanager.ControllerContext) (controller.Interface, bool, error) {
		c, ok := cloud.(*provider.Cloud)
		if !ok {
			return nil, false, errors.New("the class controller needs the ironlb cloud provider")
		}
		client := cfg.ClientBuilder.ClientOrDie(initCtx.ClientName)
		cc, err := provider.NewClassController(c, client, cfg.SharedInformers.Core().V1().Services())
		if err != nil {
			return nil, false, err
		}
		go cc.Run(ctx, int(cfg.ComponentConfig.ServiceController.ConcurrentServiceSyncs))
		return nil, true, nil
	}
}

func serveMetrics(addr string, reg *prometheus.Registry) {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	klog.InfoS("Serving metrics", "addr", addr)
	if err := srv.ListenAndServe(); err != nil {
		klog.ErrorS(err, "Metrics server stopped", "addr", addr)
	}
}
