package controller

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	networkinglisters "k8s.io/client-go/listers/networking/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"

	"github.com/ironlb/ironlb/ingress"
)

// ControllerName is the spec.controller of ironlb's IngressClass.
const ControllerName = "ironlb.io/ingress"

// DefaultIngressClass is the IngressClass name served when Config.IngressClass is empty.
const DefaultIngressClass = "ironlb"

// Sink receives every Table the controller builds (an *server.Server).
type Sink interface {
	Update(*ingress.Table)
}

// Config configures a Controller.
type Config struct {
	Client kubernetes.Interface
	// Sink receives each new Table.
	Sink Sink
	// IngressClass is the name of the IngressClass served (DefaultIngressClass).
	IngressClass string
	// PublishService, "namespace/name" of the LoadBalancer Service in front of the
	// proxy: its status.loadBalancer.ingress is written into every handled Ingress.
	PublishService string
	// DefaultCertificate, "namespace/name" of a kubernetes.io/tls Secret served to TLS
	// clients whose server name matches no host. Empty: the proxy's own.
	DefaultCertificate string
	// Recorder receives the Events; nil sends them to the API server.
	Recorder record.EventRecorder
}

// Controller watches IngressClasses, Ingresses, Services, EndpointSlices and
// kubernetes.io/tls Secrets and turns them into Tables.
type Controller struct {
	cfg      Config
	client   kubernetes.Interface
	recorder record.EventRecorder
	queue    workqueue.TypedRateLimitingInterface[string]
	factory  informers.SharedInformerFactory
	secrets  informers.SharedInformerFactory

	classLister   networkinglisters.IngressClassLister
	ingLister     networkinglisters.IngressLister
	svcLister     corelisters.ServiceLister
	sliceIndexer  cache.Indexer
	secretLister  corelisters.SecretLister
	publish       *types.NamespacedName
	defaultSecret *types.NamespacedName

	refs     atomic.Pointer[references] // what the last sync read, to filter events
	certs    *certCache
	reported map[types.UID]map[string]bool // Problems already sent as Events, per Ingress
	synced   atomic.Bool
}

// references are the objects handled Ingresses point at.
type references struct {
	services map[string]bool // "namespace/name"
	secrets  map[string]bool
}

const (
	syncKey      = "sync"
	serviceIndex = "service"
)

// New makes a Controller; Run starts it.
func New(cfg Config) (*Controller, error) {
	if cfg.Client == nil || cfg.Sink == nil {
		return nil, errors.New("controller: Client and Sink are required")
	}
	if cfg.IngressClass == "" {
		cfg.IngressClass = DefaultIngressClass
	}
	c := &Controller{cfg: cfg, client: cfg.Client, recorder: cfg.Recorder, certs: newCertCache(),
		reported: map[types.UID]map[string]bool{},
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](100*time.Millisecond, time.Minute),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "ironlb-ingress"}),
	}
	var err error
	if c.publish, err = parseRef("--publish-service", cfg.PublishService); err != nil {
		return nil, err
	}
	if c.defaultSecret, err = parseRef("--default-certificate", cfg.DefaultCertificate); err != nil {
		return nil, err
	}
	c.refs.Store(&references{})

	c.factory = informers.NewSharedInformerFactory(cfg.Client, 0)
	// Only kubernetes.io/tls Secrets are watched (and cached): not service-account
	// tokens and other credentials.
	c.secrets = informers.NewSharedInformerFactoryWithOptions(cfg.Client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("type", string(v1.SecretTypeTLS)).String()
		}))
	classes := c.factory.Networking().V1().IngressClasses()
	ings := c.factory.Networking().V1().Ingresses()
	svcs := c.factory.Core().V1().Services()
	slicesInf := c.factory.Discovery().V1().EndpointSlices()
	secrets := c.secrets.Core().V1().Secrets()
	c.classLister, c.ingLister, c.svcLister, c.secretLister = classes.Lister(), ings.Lister(), svcs.Lister(), secrets.Lister()
	if err := slicesInf.Informer().AddIndexers(cache.Indexers{serviceIndex: sliceService}); err != nil {
		return nil, fmt.Errorf("indexing EndpointSlices: %w", err)
	}
	c.sliceIndexer = slicesInf.Informer().GetIndexer()

	always := func(any) bool { return true }
	for _, h := range []struct {
		inf      cache.SharedIndexInformer
		relevant func(obj any) bool
		changed  func(old, obj any) bool
	}{
		{classes.Informer(), always, nil},
		{ings.Informer(), always, ingressChanged},
		{svcs.Informer(), c.serviceRelevant, nil},
		{slicesInf.Informer(), c.sliceRelevant, nil},
		{secrets.Informer(), c.secretRelevant, nil},
	} {
		relevant, changed := h.relevant, h.changed
		if _, err := h.inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc: func(obj any) {
				if relevant(obj) {
					c.queue.Add(syncKey)
				}
			},
			UpdateFunc: func(old, obj any) {
				if (relevant(old) || relevant(obj)) && (changed == nil || changed(old, obj)) && !sameVersion(old, obj) {
					c.queue.Add(syncKey)
				}
			},
			DeleteFunc: func(obj any) {
				if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
					obj = d.Obj
				}
				if relevant(obj) {
					c.queue.Add(syncKey)
				}
			},
		}); err != nil {
			return nil, fmt.Errorf("watching: %w", err)
		}
	}
	return c, nil
}

func parseRef(flag, s string) (*types.NamespacedName, error) {
	if s == "" {
		return nil, nil
	}
	ns, name, ok := strings.Cut(s, "/")
	if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
		return nil, fmt.Errorf("%s=%q: want namespace/name", flag, s)
	}
	return &types.NamespacedName{Namespace: ns, Name: name}, nil
}

func sliceService(obj any) ([]string, error) {
	s, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return nil, nil
	}
	name := s.Labels[discoveryv1.LabelServiceName]
	if name == "" {
		return nil, nil
	}
	return []string{s.Namespace + "/" + name}, nil
}

func sameVersion(old, obj any) bool {
	o, ok1 := old.(interface{ GetResourceVersion() string })
	n, ok2 := obj.(interface{ GetResourceVersion() string })
	return ok1 && ok2 && o.GetResourceVersion() == n.GetResourceVersion()
}

// ingressChanged ignores updates that only touch an Ingress's status (ours included).
func ingressChanged(old, obj any) bool {
	o, ok1 := old.(*networkingv1.Ingress)
	n, ok2 := obj.(*networkingv1.Ingress)
	if !ok1 || !ok2 {
		return true
	}
	return !reflect.DeepEqual(o.Spec, n.Spec) || !maps.Equal(o.Annotations, n.Annotations) ||
		!o.CreationTimestamp.Equal(&n.CreationTimestamp) || o.UID != n.UID
}

func keyOf(obj any) string {
	m, ok := obj.(interface {
		GetNamespace() string
		GetName() string
	})
	if !ok {
		return ""
	}
	return m.GetNamespace() + "/" + m.GetName()
}

func (c *Controller) serviceRelevant(obj any) bool {
	k := keyOf(obj)
	return c.refs.Load().services[k] || (c.publish != nil && k == c.publish.String())
}

func (c *Controller) sliceRelevant(obj any) bool {
	s, ok := obj.(*discoveryv1.EndpointSlice)
	return ok && c.refs.Load().services[s.Namespace+"/"+s.Labels[discoveryv1.LabelServiceName]]
}

func (c *Controller) secretRelevant(obj any) bool {
	k := keyOf(obj)
	return c.refs.Load().secrets[k] || (c.defaultSecret != nil && k == c.defaultSecret.String())
}

// Synced reports whether a first Table was built from complete caches.
func (c *Controller) Synced() bool { return c.synced.Load() }

// Run starts the informers, waits for their caches, and builds a Table after every
// relevant change (changes arriving during a build are coalesced into the next one)
// until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	defer utilruntime.HandleCrash()
	if c.recorder == nil {
		b := record.NewBroadcaster(record.WithContext(ctx))
		b.StartStructuredLogging(3)
		b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: c.client.CoreV1().Events("")})
		c.recorder = b.NewRecorder(scheme.Scheme, v1.EventSource{Component: "ironlb-ingress"})
		defer b.Shutdown()
	}
	c.factory.Start(ctx.Done())
	c.secrets.Start(ctx.Done())
	defer c.factory.Shutdown()
	defer c.secrets.Shutdown()
	go func() { <-ctx.Done(); c.queue.ShutDown() }()
	for typ, ok := range c.factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("waiting for the %v cache: %w", typ, context.Cause(ctx))
		}
	}
	for typ, ok := range c.secrets.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("waiting for the %v cache: %w", typ, context.Cause(ctx))
		}
	}
	c.queue.Add(syncKey)
	for c.processNext(ctx) {
	}
	return nil
}

func (c *Controller) processNext(ctx context.Context) bool {
	key, quit := c.queue.Get()
	if quit {
		return false
	}
	defer c.queue.Done(key)
	if err := c.sync(ctx); err != nil {
		if apierrors.IsConflict(err) {
			// A status write raced an update our cache had not seen yet.
			klog.V(2).InfoS("Ingress status write conflicted; retrying", "err", err)
		} else {
			klog.ErrorS(err, "Ingress sync failed; retrying")
		}
		c.queue.AddRateLimited(key)
		return true
	}
	c.queue.Forget(key)
	return true
}

// sync builds and publishes a Table from the caches, sends new Problems as Events and
// writes Ingress statuses. Its cost is O(handled Ingresses + their endpoints) per call.
func (c *Controller) sync(ctx context.Context) error {
	start := time.Now()
	ingClasses, err := c.classLister.List(labels.Everything())
	if err != nil {
		return fmt.Errorf("listing IngressClasses: %w", err)
	}
	cls := classOf(c.cfg.IngressClass, ingClasses)
	all, err := c.ingLister.List(labels.Everything())
	if err != nil {
		return fmt.Errorf("listing Ingresses: %w", err)
	}
	var handled []*networkingv1.Ingress
	for _, ing := range all {
		if cls.handles(ing) {
			handled = append(handled, ing)
		}
	}
	slices.SortFunc(handled, func(a, b *networkingv1.Ingress) int {
		return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})
	in := ingress.Input{
		Endpoints:    map[ingress.ServiceKey][]netip.AddrPort{},
		Certificates: map[ingress.SecretKey]*tls.Certificate{},
		SecretErrors: map[ingress.SecretKey]error{},
	}
	refs := &references{services: map[string]bool{}, secrets: map[string]bool{}}
	for _, ing := range handled {
		n := translate(ing)
		in.Ingresses = append(in.Ingresses, n)
		for _, b := range backends(&n) {
			refs.services[n.Namespace+"/"+b.Service] = true
		}
		for _, t := range n.TLS {
			refs.secrets[n.Namespace+"/"+t.SecretName] = true
		}
	}
	// Publish what is referenced before reading the caches: a change that lands after
	// this point passes the event filters and triggers the next sync.
	c.refs.Store(refs)

	var problems []ingress.Problem
	resolved := map[ingress.ServiceKey]error{}
	for i := range in.Ingresses {
		n := &in.Ingresses[i]
		for _, b := range backends(n) {
			k := ingress.ServiceKey{Namespace: n.Namespace, Name: b.Service, Port: b.Port}
			err, done := resolved[k]
			if !done {
				in.Endpoints[k], err = c.endpoints(k)
				resolved[k] = err
			}
			if err != nil {
				problems = append(problems, ingress.Problem{Namespace: n.Namespace, Name: n.Name,
					Reason: "BackendUnavailable", Message: err.Error() + "; requests to it get 503"})
			}
		}
		for _, t := range n.TLS {
			c.loadSecret(ingress.SecretKey{Namespace: n.Namespace, Name: t.SecretName}, &in)
		}
	}
	if c.defaultSecret != nil {
		in.DefaultCertificate = c.defaultCertificate()
	}
	c.certs.sweep()

	table, buildProblems := ingress.Build(in)
	c.emit(handled, append(buildProblems, problems...))
	// Synced before the Table is out: whoever sees the Table sees Synced too.
	c.synced.Store(true)
	c.cfg.Sink.Update(table)
	klog.V(2).InfoS("Routing table published", "ingresses", len(handled), "routes", table.Len(),
		"upstreams", len(table.Upstreams()), "duration", time.Since(start))
	return c.writeStatus(ctx, handled)
}

func (c *Controller) endpoints(k ingress.ServiceKey) ([]netip.AddrPort, error) {
	svc, err := c.svcLister.Services(k.Namespace).Get(k.Name)
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("Service %s/%s not found", k.Namespace, k.Name)
	}
	if err != nil {
		return nil, fmt.Errorf("Service %s/%s: %w", k.Namespace, k.Name, err)
	}
	objs, err := c.sliceIndexer.ByIndex(serviceIndex, k.Namespace+"/"+k.Name)
	if err != nil {
		return nil, fmt.Errorf("EndpointSlices of %s/%s: %w", k.Namespace, k.Name, err)
	}
	sl := make([]*discoveryv1.EndpointSlice, 0, len(objs))
	for _, o := range objs {
		if s, ok := o.(*discoveryv1.EndpointSlice); ok {
			sl = append(sl, s)
		}
	}
	return resolveEndpoints(svc, k.Port, sl)
}

// loadSecret puts a referenced Secret's certificate (or why it is unusable) into in.
// A Secret absent from the cache stays absent: Build reports it missing.
func (c *Controller) loadSecret(k ingress.SecretKey, in *ingress.Input) {
	if k.Name == "" {
		return
	}
	if _, done := in.Certificates[k]; done {
		return
	}
	if _, done := in.SecretErrors[k]; done {
		return
	}
	s, err := c.secretLister.Secrets(k.Namespace).Get(k.Name)
	if err != nil || s.Type != v1.SecretTypeTLS {
		return
	}
	cert, err := c.certs.parse(s)
	if err != nil {
		in.SecretErrors[k] = err
		return
	}
	in.Certificates[k] = cert
}

func (c *Controller) defaultCertificate() *tls.Certificate {
	s, err := c.secretLister.Secrets(c.defaultSecret.Namespace).Get(c.defaultSecret.Name)
	if err != nil {
		klog.ErrorS(err, "Default certificate Secret unavailable; serving the generated one", "secret", c.defaultSecret)
		return nil
	}
	cert, err := c.certs.parse(s)
	if err != nil {
		klog.ErrorS(err, "Default certificate Secret unusable; serving the generated one", "secret", c.defaultSecret)
		return nil
	}
	return cert
}

// emit sends each Problem as a Warning Event on its Ingress once: a Problem already
// reported for that Ingress (same reason and message) is not sent again while it
// persists; one that goes away and comes back is.
func (c *Controller) emit(handled []*networkingv1.Ingress, problems []ingress.Problem) {
	byKey := make(map[string]*networkingv1.Ingress, len(handled))
	for _, ing := range handled {
		byKey[ing.Namespace+"/"+ing.Name] = ing
	}
	now := map[types.UID]map[string]bool{}
	for _, p := range problems {
		ing := byKey[p.Namespace+"/"+p.Name]
		if ing == nil {
			continue
		}
		k := p.Reason + "\x00" + p.Message
		if now[ing.UID] == nil {
			now[ing.UID] = map[string]bool{}
		}
		if now[ing.UID][k] {
			continue
		}
		now[ing.UID][k] = true
		if !c.reported[ing.UID][k] {
			c.recorder.Event(ing, v1.EventTypeWarning, p.Reason, p.Message)
		}
	}
	c.reported = now
}

// writeStatus copies the publish Service's load-balancer addresses into every handled
// Ingress whose status differs. Until the Service has an address, statuses are left
// as they are.
func (c *Controller) writeStatus(ctx context.Context, handled []*networkingv1.Ingress) error {
	if c.publish == nil {
		return nil
	}
	svc, err := c.svcLister.Services(c.publish.Namespace).Get(c.publish.Name)
	if err != nil {
		if apierrors.IsNotFound(err) {
			klog.V(2).InfoS("Publish Service not found; Ingress statuses not written", "service", c.publish)
			return nil
		}
		return fmt.Errorf("publish Service %s: %w", c.publish, err)
	}
	var want []networkingv1.IngressLoadBalancerIngress
	for _, lb := range svc.Status.LoadBalancer.Ingress {
		want = append(want, networkingv1.IngressLoadBalancerIngress{IP: lb.IP, Hostname: lb.Hostname})
	}
	if len(want) == 0 {
		return nil
	}
	var errs []error
	for _, ing := range handled {
		if reflect.DeepEqual(ing.Status.LoadBalancer.Ingress, want) {
			continue
		}
		cp := ing.DeepCopy()
		cp.Status.LoadBalancer.Ingress = want
		if _, err := c.client.NetworkingV1().Ingresses(ing.Namespace).UpdateStatus(ctx, cp, metav1.UpdateOptions{}); err != nil {
			errs = append(errs, fmt.Errorf("status of Ingress %s/%s: %w", ing.Namespace, ing.Name, err))
			continue
		}
		klog.V(2).InfoS("Ingress status written", "ingress", klog.KObj(ing), "addresses", want)
	}
	return errors.Join(errs...)
}
