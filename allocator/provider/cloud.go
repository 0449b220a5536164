// Package provider runs the ironlb allocator as a Kubernetes cloud provider.
//
// Cloud implements k8s.io/cloud-provider's Interface with only LoadBalancer()
// supported: the stock service controller (class-less LoadBalancer Services) and
// ClassController (Services with spec.loadBalancerClass set to ironlb's class) both call
// the same EnsureLoadBalancer / EnsureLoadBalancerDeleted methods.
//
// Nothing is allocated before the allocator has been rebuilt from the cluster: Start
// lists IPPools, Namespaces and Services, records every address already published in a
// Service's status.loadBalancer.ingress, and only then opens the gate that
// EnsureLoadBalancer waits on. A restarted (or newly elected) controller therefore never
// hands out an address that a live Service holds.
//
// Unit tests can drive a Cloud with client-go fake clientsets: New, Start with a fake
// kubernetes.Interface and a fake dynamic.Interface, then call EnsureLoadBalancer (see
// the package examples).
package provider

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	cloudprovider "k8s.io/cloud-provider"
	"k8s.io/klog/v2"

	"github.com/ironlb/ironlb/allocator"
	"github.com/ironlb/ironlb/api/v1alpha1"
)

// ProviderName is the name ironlb registers under (--cloud-provider=ironlb).
const ProviderName = "ironlb"

// DefaultLoadBalancerClass is the spec.loadBalancerClass ironlb serves besides unset.
const DefaultLoadBalancerClass = "ironlb.io/lb"

func init() {
	cloudprovider.RegisterCloudProvider(ProviderName, func(io.Reader) (cloudprovider.Interface, error) {
		return New(Options{}), nil
	})
}

// Options configure a Cloud.
type Options struct {
	// LoadBalancerClass is the class served in addition to unset (default ironlb.io/lb).
	LoadBalancerClass string
	// RetryAfter is how soon a Service that could not get an address (no pool, pool
	// exhausted) is retried; pool edits usually fix those. Default 5s.
	RetryAfter time.Duration
	// Metrics receives allocator gauges and counters; nil keeps them unexported.
	Metrics *Metrics
}

// Cloud is the ironlb cloud provider. Create it with New; it is safe for concurrent use.
type Cloud struct {
	opts    Options
	alloc   *allocator.Allocator
	metrics *Metrics // opts.Metrics; nil records nothing

	startOnce sync.Once
	ready     chan struct{}

	dyn       dynamic.Interface
	recorder  record.EventRecorder
	services  corelisters.ServiceLister
	poolStore cache.Store
	status    *poolStatusWriter

	mu          sync.Mutex
	invalidPool map[string]string // pool name -> why its spec is unusable
}

var _ cloudprovider.Interface = (*Cloud)(nil)
var _ cloudprovider.LoadBalancer = (*Cloud)(nil)

// New returns a Cloud that has not started; call Start (or let the cloud-controller-manager
// call Initialize) before EnsureLoadBalancer can return.
func New(opts Options) *Cloud {
	if opts.LoadBalancerClass == "" {
		opts.LoadBalancerClass = DefaultLoadBalancerClass
	}
	if opts.RetryAfter <= 0 {
		opts.RetryAfter = 5 * time.Second
	}
	return &Cloud{
		opts:        opts,
		alloc:       allocator.New(),
		metrics:     opts.Metrics,
		ready:       make(chan struct{}),
		invalidPool: map[string]string{},
	}
}

// Allocator gives access to the allocator (read-mostly: for status and tests).
func (c *Cloud) Allocator() *allocator.Allocator { return c.alloc }

// LoadBalancerClass is the class this Cloud serves besides unset.
func (c *Cloud) LoadBalancerClass() string { return c.opts.LoadBalancerClass }

// Ready is closed once the allocator has been rebuilt from the cluster.
func (c *Cloud) Ready() <-chan struct{} { return c.ready }

// Initialize is called by the cloud-controller-manager once it leads; it starts the
// Cloud with clients from the builder.
func (c *Cloud) Initialize(cb cloudprovider.ControllerClientBuilder, stop <-chan struct{}) {
	cfg, err := cb.Config("ironlb-allocator")
	if err != nil {
		klog.Fatalf("ironlb: building client config: %v", err)
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		klog.Fatalf("ironlb: building client: %v", err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		klog.Fatalf("ironlb: building dynamic client: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-stop; cancel() }()
	if err := c.Start(ctx, client, dyn); err != nil {
		klog.Fatalf("ironlb: %v", err)
	}
}

// Start wires the Cloud to a cluster: it starts informers for IPPools, Namespaces and
// Services, rebuilds the allocator from them in the background and then closes Ready.
// It also starts the IPPool status writer. Start returns at once; calling it again is
// a no-op.
func (c *Cloud) Start(ctx context.Context, client kubernetes.Interface, dyn dynamic.Interface) error {
	var err error
	c.startOnce.Do(func() { err = c.start(ctx, client, dyn) })
	return err
}

func (c *Cloud) start(ctx context.Context, client kubernetes.Interface, dyn dynamic.Interface) error {
	c.dyn = dyn
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartStructuredLogging(3)
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	c.recorder = broadcaster.NewRecorder(scheme.Scheme, v1.EventSource{Component: "ironlb-controller"})
	go func() { <-ctx.Done(); broadcaster.Shutdown() }()

	factory := informers.NewSharedInformerFactory(client, 0)
	svcInformer := factory.Core().V1().Services()
	nsInformer := factory.Core().V1().Namespaces().Informer()
	c.services = svcInformer.Lister()
	dfactory := dynamicinformer.NewDynamicSharedInformerFactory(dyn, 0)
	poolInformer := dfactory.ForResource(v1alpha1.IPPoolsResource).Informer()
	c.poolStore = poolInformer.GetStore()
	c.status = newPoolStatusWriter(c)

	if _, err := poolInformer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { c.onPool(obj) },
		UpdateFunc: func(old, obj any) {
			// Status writes (ours) do not bump the generation: skip them, a spec
			// reload costs O(held addresses).
			if o, n := old.(metav1.Object), obj.(metav1.Object); o.GetGeneration() != n.GetGeneration() {
				c.onPool(obj)
			}
		},
		DeleteFunc: func(obj any) { c.onPoolDelete(obj) },
	}); err != nil {
		return fmt.Errorf("watching IPPools: %w", err)
	}
	if _, err := nsInformer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { c.onNamespace(obj) },
		UpdateFunc: func(_, obj any) { c.onNamespace(obj) },
	}); err != nil {
		return fmt.Errorf("watching Namespaces: %w", err)
	}
	if _, err := svcInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		DeleteFunc: func(obj any) { c.onServiceDelete(obj) },
	}); err != nil {
		return fmt.Errorf("watching Services: %w", err)
	}
	factory.Start(ctx.Done())
	dfactory.Start(ctx.Done())

	go func() {
		start := time.Now()
		if !cache.WaitForNamedCacheSyncWithContext(ctx, poolInformer.HasSynced, nsInformer.HasSynced, svcInformer.Informer().HasSynced) {
			return
		}
		c.rebuild()
		close(c.ready)
		klog.InfoS("Allocator rebuilt from the cluster; allocating", "pools", len(c.alloc.PoolNames()), "elapsed", time.Since(start))
		c.status.run(ctx)
	}()
	return nil
}

// rebuild records every address already published by a Service this provider serves.
// Pools and namespace labels are already in the allocator (their handlers ran during
// the informers' initial sync).
func (c *Cloud) rebuild() {
	svcs, err := c.services.List(everything)
	if err != nil {
		klog.ErrorS(err, "Listing Services for the rebuild")
		return
	}
	restored := 0
	for _, svc := range svcs {
		if !c.serves(svc) {
			continue
		}
		ips := ingressIPs(&svc.Status.LoadBalancer)
		if len(ips) == 0 {
			continue
		}
		if err := c.alloc.Restore(svc, ips); err != nil {
			klog.ErrorS(err, "Could not restore the addresses of a Service", "service", klog.KObj(svc), "ips", ips)
			c.recorder.Eventf(svc, v1.EventTypeWarning, reasonOf(err), "Could not keep address(es) %v at start-up: %v", ips, err)
			continue
		}
		restored++
	}
	klog.InfoS("Restored addresses of existing Services", "services", restored)
	c.status.markAll()
}

// serves reports whether svc is a LoadBalancer Service this provider is responsible
// for: spec.loadBalancerClass unset or equal to the configured class.
func (c *Cloud) serves(svc *v1.Service) bool {
	if svc.Spec.Type != v1.ServiceTypeLoadBalancer {
		return false
	}
	return svc.Spec.LoadBalancerClass == nil || *svc.Spec.LoadBalancerClass == c.opts.LoadBalancerClass
}

func (c *Cloud) onPool(obj any) {
	pool, err := poolFromObject(obj)
	if err != nil {
		klog.ErrorS(err, "Ignoring an IPPool that does not decode")
		return
	}
	c.mu.Lock()
	if err := c.alloc.SetPool(pool); err != nil {
		c.invalidPool[pool.Name] = err.Error()
		c.mu.Unlock()
		klog.ErrorS(err, "IPPool is not usable", "ippool", pool.Name)
		c.recorder.Eventf(pool, v1.EventTypeWarning, "InvalidPool", "IPPool %s is not usable: %v", pool.Name, err)
	} else {
		delete(c.invalidPool, pool.Name)
		c.mu.Unlock()
		klog.V(2).InfoS("IPPool loaded", "ippool", pool.Name, "addresses", pool.Spec.Addresses)
	}
	if c.status != nil {
		c.status.markAll() // overlaps of other pools may have changed
	}
	c.reportOrphans()
}

func (c *Cloud) onPoolDelete(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	pool, err := poolFromObject(obj)
	if err != nil {
		return
	}
	c.alloc.DeletePool(pool.Name)
	c.mu.Lock()
	delete(c.invalidPool, pool.Name)
	c.mu.Unlock()
	c.metrics.forgetPool(pool.Name)
	if c.status != nil {
		c.status.markAll()
	}
	c.reportOrphans()
}

// reportOrphans tells every Service whose address no pool covers any more (after a
// pool edit or deletion) that it keeps the address: a pool edit never re-IPs a live
// Service, but it must not go unnoticed either. O(Services), on pool edits only.
func (c *Cloud) reportOrphans() {
	select {
	case <-c.ready:
	default:
		return // the rebuild has not run; the first EnsureLoadBalancer will report
	}
	svcs, err := c.services.List(everything)
	if err != nil {
		return
	}
	for _, svc := range svcs {
		if a, ok := c.alloc.Lookup(allocator.ServiceKey(svc)); ok && len(a.Orphaned) > 0 {
			c.orphanEvent(svc, a)
		}
	}
}

func (c *Cloud) onNamespace(obj any) {
	if ns, ok := obj.(*v1.Namespace); ok {
		c.alloc.SetNamespaceLabels(ns.Name, ns.Labels)
	}
}

// onServiceDelete releases addresses of a Service deleted without the finalizer path
// (finalizer removed by hand, or deleted while the controller was down and the
// finalizer was forced off). Release is idempotent.
func (c *Cloud) onServiceDelete(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	svc, ok := obj.(*v1.Service)
	if !ok {
		return
	}
	c.release(svc, "deleted")
}

func (c *Cloud) poolValidity(name string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	why, bad := c.invalidPool[name]
	return why, !bad
}

func poolFromObject(obj any) (*v1alpha1.IPPool, error) {
	u, ok := obj.(interface{ UnstructuredContent() map[string]any })
	if !ok {
		return nil, fmt.Errorf("unexpected object %T", obj)
	}
	pool := &v1alpha1.IPPool{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.UnstructuredContent(), pool); err != nil {
		return nil, fmt.Errorf("decoding IPPool: %w", err)
	}
	return pool, nil
}

func ingressIPs(st *v1.LoadBalancerStatus) []netip.Addr {
	var ips []netip.Addr
	for _, in := range st.Ingress {
		if a, err := netip.ParseAddr(in.IP); err == nil {
			ips = append(ips, a.Unmap())
		}
	}
	return ips
}

// Interface methods other than LoadBalancer are not implemented: ironlb only provides
// load balancers.

// LoadBalancer returns the Cloud itself.
func (c *Cloud) LoadBalancer() (cloudprovider.LoadBalancer, bool) { return c, true }

// Instances is not implemented.
func (c *Cloud) Instances() (cloudprovider.Instances, bool) { return nil, false }

// InstancesV2 is not implemented.
func (c *Cloud) InstancesV2() (cloudprovider.InstancesV2, bool) { return nil, false }

// Zones is not implemented.
func (c *Cloud) Zones() (cloudprovider.Zones, bool) { return nil, false }

// Clusters is not implemented.
func (c *Cloud) Clusters() (cloudprovider.Clusters, bool) { return nil, false }

// Routes is not implemented.
func (c *Cloud) Routes() (cloudprovider.Routes, bool) { return nil, false }

// ProviderName returns "ironlb".
func (c *Cloud) ProviderName() string { return ProviderName }

// HasClusterID is true: ironlb needs no cluster tag.
func (c *Cloud) HasClusterID() bool { return true }
