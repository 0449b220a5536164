// Package provider is the Kubernetes shell around the pure allocator package: the
// cloud provider "ironlb" (k8s.io/cloud-provider's Interface with only
// LoadBalancer), ironlb's class-aware Service controller that drives it, the IPPool
// status writer and the controller's metrics.
//
// # Pieces
//
//   - Cloud implements cloudprovider.Interface and cloudprovider.LoadBalancer on top
//     of an allocator.Allocator. It is a cloudprovider.InformerUser: it watches
//     Services and Namespaces through the cloud-controller-manager's shared informers
//     (one watch per resource for the whole process) and IPPools through a dynamic
//     informer of its own.
//   - ServiceController serves LoadBalancer Services whose spec.loadBalancerClass is
//     unset (unless Options.IgnoreClassless) or ironlb's class, and only those: a
//     Service of another class is never written, also not on deletion or type
//     change. It calls the Cloud through the cloudprovider.LoadBalancer interface
//     and publishes the result with one PATCH of the status subresource carrying
//     status.loadBalancer, the service.kubernetes.io/load-balancer-cleanup
//     finalizer and the allocator.AnnotationAllocatedFromPool attribution.
//
// # Start-up gate
//
// Nothing is allocated before the allocator has been rebuilt from the cluster: the
// gate waits until the IPPool and Namespace event handlers have processed their
// informers' initial lists (the handler registrations' HasSynced, not only the
// informers'), and the Service informer has synced; it then restores every address
// already published in a Service's status.loadBalancer.ingress (with its published
// pool attribution) and only then opens. A restarted or newly elected controller
// therefore never hands out an address that a live Service holds, and never
// allocates from a partial set of pools.
//
// # Ownership
//
// Addresses are owned by Service UID: a deletion seen late for an old incarnation of
// a name never frees the addresses of a newer Service with the same name.
//
// Unit tests can drive a Cloud and a ServiceController with client-go fake
// clientsets (see the package example).
package provider

import (
	"context"
	"fmt"
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
	servicehelper "k8s.io/cloud-provider/service/helpers"
	"k8s.io/klog/v2"

	"github.com/ironlb/ironlb/allocator"
	"github.com/ironlb/ironlb/api/v1alpha1"
)

// ProviderName is the name ironlb registers under (--cloud-provider=ironlb).
const ProviderName = "ironlb"

// DefaultLoadBalancerClass is the spec.loadBalancerClass ironlb serves besides unset.
const DefaultLoadBalancerClass = "ironlb.io/lb"

// Options configure a Cloud.
type Options struct {
	// LoadBalancerClass is the class served in addition to unset (default ironlb.io/lb).
	LoadBalancerClass string
	// IgnoreClassless leaves Services without spec.loadBalancerClass alone (for a
	// cluster where another implementation is the default provider).
	IgnoreClassless bool
	// RetryAfter is how soon a Service that could not get an address is retried
	// when nothing else happens; pool edits, namespace label changes and released
	// addresses retry refused Services at once. Default 30s.
	RetryAfter time.Duration
	// Metrics receives allocator gauges and counters; nil keeps them unexported.
	Metrics *Metrics
	// EventQPS is the rate at which Events are written (default 10 per second, bursts
	// of twice that). Events are queued, never dropped below 100,000 waiting, and
	// trail the status writes during a burst of Services instead of competing with
	// them and with the Services' own creation.
	EventQPS float32
}

// Cloud is the ironlb cloud provider. Create it with New; it is safe for concurrent use.
type Cloud struct {
	opts    Options
	alloc   *allocator.Allocator
	metrics *Metrics // opts.Metrics; nil records nothing

	startOnce sync.Once
	ready     chan struct{}

	// Set by Initialize, used by SetInformers (the cloud-controller-manager path).
	ctx        context.Context
	client     kubernetes.Interface
	eventsFrom kubernetes.Interface
	dyn        dynamic.Interface

	pools dynamicinformer.DynamicSharedInformerFactory // set by Prewarm or start

	recorder  record.EventRecorder
	services  corelisters.ServiceLister
	poolStore cache.Store
	status    *poolStatusWriter

	mu          sync.Mutex
	invalidPool map[string]string // pool name -> why its spec is unusable
	refused     map[string]string // Service key -> last refusal reason+message (Event dedup)
	orphans     map[string]string // Service key -> orphaned addresses last reported
	changed     chan struct{}     // signalled when refused Services may now succeed
}

var (
	_ cloudprovider.Interface    = (*Cloud)(nil)
	_ cloudprovider.LoadBalancer = (*Cloud)(nil)
	_ cloudprovider.InformerUser = (*Cloud)(nil)
)

// New returns a Cloud that has not started; call Start (or let the cloud-controller-
// manager call Initialize and SetInformers) before EnsureLoadBalancer can return.
func New(opts Options) *Cloud {
	if opts.LoadBalancerClass == "" {
		opts.LoadBalancerClass = DefaultLoadBalancerClass
	}
	if opts.RetryAfter <= 0 {
		opts.RetryAfter = 30 * time.Second
	}
	if opts.EventQPS <= 0 {
		opts.EventQPS = 10
	}
	return &Cloud{
		opts:        opts,
		alloc:       allocator.New(),
		metrics:     opts.Metrics,
		ready:       make(chan struct{}),
		invalidPool: map[string]string{},
		refused:     map[string]string{},
		orphans:     map[string]string{},
		changed:     make(chan struct{}, 1),
	}
}

// Allocator gives access to the allocator (read-mostly: for status and tests).
func (c *Cloud) Allocator() *allocator.Allocator { return c.alloc }

// LoadBalancerClass is the class this Cloud serves besides unset.
func (c *Cloud) LoadBalancerClass() string { return c.opts.LoadBalancerClass }

// Ready is closed once the allocator has been rebuilt from the cluster.
func (c *Cloud) Ready() <-chan struct{} { return c.ready }

// Initialize is called by the cloud-controller-manager once it leads; it builds
// the clients. The informers arrive with SetInformers, which starts the Cloud.
func (c *Cloud) Initialize(cb cloudprovider.ControllerClientBuilder, stop <-chan struct{}) {
	var err error
	if c.client, err = cb.Client("ironlb-allocator"); err != nil {
		klog.Fatalf("ironlb: building client: %v", err)
	}
	// Events go through their own client (and client-side rate limit), so that
	// recording them never delays a status write.
	if c.eventsFrom, err = cb.Client("ironlb-events"); err != nil {
		klog.Fatalf("ironlb: building events client: %v", err)
	}
	cfg, err := cb.Config("ironlb-ippools")
	if err != nil {
		klog.Fatalf("ironlb: building client config: %v", err)
	}
	if c.dyn, err = dynamic.NewForConfig(cfg); err != nil {
		klog.Fatalf("ironlb: building dynamic client: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-stop; cancel() }()
	c.ctx = ctx
}

// SetInformers is called by the cloud-controller-manager after Initialize with its
// shared informer factory (which it starts afterwards); it starts the Cloud.
func (c *Cloud) SetInformers(factory informers.SharedInformerFactory) {
	if c.client == nil {
		klog.Fatal("ironlb: SetInformers called before Initialize")
	}
	if err := c.start(c.ctx, c.client, c.eventsFrom, c.dyn, factory); err != nil {
		klog.Fatalf("ironlb: %v", err)
	}
}

// Prewarm starts watching IPPools, and the Services and Namespaces of factory,
// before the Cloud is started: a standby replica keeps these caches synced while it
// waits for the lease, so that taking over costs the lease and not a full List of
// every Service. It is optional; call it at most once, before Start or
// SetInformers, with the factory that will be passed to them.
func (c *Cloud) Prewarm(ctx context.Context, dyn dynamic.Interface, factory informers.SharedInformerFactory) {
	c.pools = dynamicinformer.NewDynamicSharedInformerFactory(dyn, 0)
	c.pools.ForResource(v1alpha1.IPPoolsResource).Informer()
	c.pools.Start(ctx.Done())
	factory.Core().V1().Services().Informer()
	factory.Core().V1().Namespaces().Informer()
	factory.Start(ctx.Done())
}

// Start wires the Cloud to a cluster without a cloud-controller-manager (tests and
// other embedders): it watches Services and Namespaces through factory (shared
// with the ServiceController, so each resource is watched once; Start starts the
// factory) and IPPools through dyn, rebuilds the allocator in the background and
// then closes Ready. Calling it again is a no-op.
func (c *Cloud) Start(ctx context.Context, client kubernetes.Interface, dyn dynamic.Interface, factory informers.SharedInformerFactory) error {
	err := c.start(ctx, client, client, dyn, factory)
	factory.Start(ctx.Done())
	return err
}

func (c *Cloud) start(ctx context.Context, client, eventsFrom kubernetes.Interface, dyn dynamic.Interface, factory informers.SharedInformerFactory) error {
	var err error
	c.startOnce.Do(func() { err = c.startOnceFn(ctx, client, eventsFrom, dyn, factory) })
	return err
}

func (c *Cloud) startOnceFn(ctx context.Context, client, eventsFrom kubernetes.Interface, dyn dynamic.Interface, factory informers.SharedInformerFactory) error {
	c.client, c.dyn = client, dyn
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartStructuredLogging(3)
	sink := newTrailingSink(&typedcorev1.EventSinkImpl{Interface: eventsFrom.CoreV1().Events("")}, c.opts.EventQPS, int(2*c.opts.EventQPS))
	go sink.run(ctx)
	broadcaster.StartRecordingToSink(sink)
	c.recorder = broadcaster.NewRecorder(scheme.Scheme, v1.EventSource{Component: "ironlb-controller"})
	go func() { <-ctx.Done(); broadcaster.Shutdown() }()

	svcInformer := factory.Core().V1().Services().Informer()
	nsInformer := factory.Core().V1().Namespaces().Informer()
	c.services = factory.Core().V1().Services().Lister()
	if c.pools == nil {
		c.pools = dynamicinformer.NewDynamicSharedInformerFactory(dyn, 0)
	}
	dfactory := c.pools
	poolInformer := dfactory.ForResource(v1alpha1.IPPoolsResource).Informer()
	c.poolStore = poolInformer.GetStore()
	c.status = newPoolStatusWriter(c)

	poolReg, err := poolInformer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { c.onPool(obj, nil) },
		UpdateFunc: func(old, obj any) {
			// Status writes (ours) do not bump the generation: skip them, a spec
			// reload costs O(held addresses).
			if o, n := old.(metav1.Object), obj.(metav1.Object); o.GetGeneration() != n.GetGeneration() {
				c.onPool(obj, old)
			}
		},
		DeleteFunc: func(obj any) { c.onPoolDelete(obj) },
	})
	if err != nil {
		return fmt.Errorf("watching IPPools: %w", err)
	}
	nsReg, err := nsInformer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { c.onNamespace(obj) },
		UpdateFunc: func(_, obj any) { c.onNamespace(obj) },
	})
	if err != nil {
		return fmt.Errorf("watching Namespaces: %w", err)
	}
	dfactory.Start(ctx.Done())

	go func() {
		start := time.Now()
		// The registrations' HasSynced: true only once the handlers have seen every
		// object of the initial lists, so every pool and namespace label is in the
		// allocator. A List that keeps failing keeps the gate shut.
		if !cache.WaitForNamedCacheSyncWithContext(ctx, poolReg.HasSynced, nsReg.HasSynced, svcInformer.HasSynced) {
			return
		}
		c.rebuild()
		close(c.ready)
		klog.InfoS("Allocator rebuilt from the cluster; allocating", "pools", len(c.alloc.PoolNames()), "elapsed", time.Since(start))
		c.status.markAll()
		c.reportOrphans()
		c.status.run(ctx)
	}()
	return nil
}

func (c *Cloud) isReady() bool {
	select {
	case <-c.ready:
		return true
	default:
		return false
	}
}

// rebuild records every address already published by a Service this provider
// serves or owns (a Service that left LoadBalancer type while the controller was
// down still holds its address until the controller cleans it up). Pools and
// namespace labels are already in the allocator.
func (c *Cloud) rebuild() {
	svcs, _ := c.services.List(everything) // a cache read: it cannot fail
	restored := 0
	for _, svc := range svcs {
		if !c.serves(svc) && !c.publishedBy(svc) {
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
}

// classMatches reports whether svc's spec.loadBalancerClass is one this Cloud
// serves.
func (c *Cloud) classMatches(svc *v1.Service) bool {
	if svc.Spec.LoadBalancerClass == nil {
		return !c.opts.IgnoreClassless
	}
	return *svc.Spec.LoadBalancerClass == c.opts.LoadBalancerClass
}

// serves reports whether svc is a LoadBalancer Service this provider is responsible
// for: type LoadBalancer with a class it serves.
func (c *Cloud) serves(svc *v1.Service) bool {
	return svc.Spec.Type == v1.ServiceTypeLoadBalancer && c.classMatches(svc)
}

// publishedBy reports whether this controller published addresses on svc: only
// the ironlb controller writes the pool attribution annotation.
func (c *Cloud) publishedBy(svc *v1.Service) bool {
	_, ok := svc.Annotations[allocator.AnnotationAllocatedFromPool]
	return ok
}

// owns reports whether svc is ironlb's to clean up: it carries ironlb's
// attribution, the allocator holds addresses for this very incarnation, or it is
// a LoadBalancer of a served class carrying the cleanup finalizer. A Service of
// another class is never owned, also not after a type change cleared its class.
func (c *Cloud) owns(svc *v1.Service) bool {
	if c.publishedBy(svc) {
		return true
	}
	if al, ok := c.alloc.Lookup(allocator.ServiceKey(svc)); ok && (al.UID == "" || al.UID == svc.UID) {
		return true
	}
	return c.serves(svc) && servicehelper.HasLBFinalizer(svc)
}

func (c *Cloud) onPool(obj, old any) {
	pool, err := poolFromObject(obj)
	if err != nil {
		klog.ErrorS(err, "Ignoring an IPPool that does not decode")
		return
	}
	// Pools whose overlap with this one may end with the edit.
	var before []string
	if old != nil {
		before = c.alloc.Overlaps(pool.Name)
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
	c.poolsChanged(append(before, pool.Name)...)
}

func (c *Cloud) onPoolDelete(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	pool, err := poolFromObject(obj)
	if err != nil {
		return
	}
	before := c.alloc.Overlaps(pool.Name)
	c.alloc.DeletePool(pool.Name)
	c.mu.Lock()
	delete(c.invalidPool, pool.Name)
	c.mu.Unlock()
	c.metrics.forgetPool(pool.Name)
	c.poolsChanged(before...)
}

// poolsChanged follows a pool edit once the gate is open: the pool's status and
// that of every pool it overlaps (before or after the edit) are re-written, Services
// left without a covering pool are told, and refused Services are retried. While
// the initial lists load nothing is done per pool: the gate marks every pool once
// (loading P pools costs O(P) status work, not O(P²)).
func (c *Cloud) poolsChanged(names ...string) {
	if !c.isReady() {
		return
	}
	for _, n := range names {
		c.status.markPools(n)
		c.status.markPools(c.alloc.Overlaps(n)...)
	}
	c.reportOrphans()
	c.retryRefused()
}

// reportOrphans tells every Service whose address no pool covers any more (after a
// pool edit or deletion) that it keeps the address: a pool edit never re-IPs a live
// Service, but it must not go unnoticed either. O(Services), on pool edits only.
func (c *Cloud) reportOrphans() {
	svcs, _ := c.services.List(everything)
	for _, svc := range svcs {
		if a, ok := c.alloc.Lookup(allocator.ServiceKey(svc)); ok && (a.UID == "" || a.UID == svc.UID) {
			c.noteOrphans(svc, a)
		}
	}
}

func (c *Cloud) onNamespace(obj any) {
	ns, ok := obj.(*v1.Namespace)
	if !ok {
		return
	}
	c.alloc.SetNamespaceLabels(ns.Name, ns.Labels)
	c.retryRefused()
}

// retryRefused signals that refused Services may now get an address (a pool or
// namespace changed, or an address was released). The ServiceController listens.
func (c *Cloud) retryRefused() {
	c.mu.Lock()
	pending := len(c.refused) > 0
	c.mu.Unlock()
	if !pending {
		return
	}
	select {
	case c.changed <- struct{}{}:
	default:
	}
}

// refusedKeys returns the Services whose last allocation attempt was refused.
func (c *Cloud) refusedKeys() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	keys := make([]string, 0, len(c.refused))
	for k := range c.refused {
		keys = append(keys, k)
	}
	return keys
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
