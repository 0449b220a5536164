package speaker

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	listerscorev1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/flowcontrol"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"

	"github.com/ironlb/ironlb/allocator"
	"github.com/ironlb/ironlb/api/v1alpha1"
	"github.com/ironlb/ironlb/l2"
	"github.com/ironlb/ironlb/proxy"
	"github.com/ironlb/ironlb/speaker/election"
	"github.com/ironlb/ironlb/speaker/handover"
	"github.com/ironlb/ironlb/speaker/membership"
)

// Defaults of Config.
const (
	// DefaultSettle is how long a speaker listens after joining memberlist
	// before it announces or publishes anything (package election, "Protocol").
	DefaultSettle = 300 * time.Millisecond
	// DefaultLeaveGrace is how long a leaving speaker keeps answering after its
	// leave was sent (package membership, "Planned restart").
	DefaultLeaveGrace = time.Second
	// DefaultNamespace is the speakers' namespace when Config.Namespace is empty.
	DefaultNamespace = "ironlb-system"
	// DefaultAddressEventQPS is Config.AddressEventQPS's default: 5 per-address
	// BGP Events a second per speaker, bursts of 10 times that.
	DefaultAddressEventQPS = 5
)

// Config configures a Speaker.
type Config struct {
	// NodeName is the Kubernetes Node this speaker runs on (required): its
	// memberlist name and the node it announces from.
	NodeName string
	// NodeIP is where memberlist listens and what peers reach; zero means the
	// Node's first InternalIP.
	NodeIP netip.Addr
	// Namespace is the speaker's own namespace, the only one it reads Secrets
	// (BGP passwords) from. Default DefaultNamespace.
	Namespace string
	// MemberlistPort is memberlist's UDP and TCP port, the same on every node;
	// zero means membership.DefaultPort (7946).
	MemberlistPort int
	// MemberlistKey encrypts memberlist (membership.ReadKeyFile); nil means
	// plain text (a warning is logged).
	MemberlistKey []byte
	// LoadBalancerClass is the spec.loadBalancerClass served besides an unset
	// class; default DefaultLoadBalancerClass.
	LoadBalancerClass string
	// Client and Dynamic talk to the API server (required).
	Client  kubernetes.Interface
	Dynamic dynamic.Interface
	// Registerer receives every metric of the speaker (and of the l2, bgp and
	// membership packages); nil registers none.
	Registerer prometheus.Registerer
	// Settle and LeaveGrace override DefaultSettle and DefaultLeaveGrace.
	Settle, LeaveGrace time.Duration
	// AddressEventQPS is how many per-address BGP Events (Advertising,
	// Withdrawn on the Services) the speaker records a second at most, with
	// bursts of 10 times that; beyond it they are skipped and counted. Zero
	// means DefaultAddressEventQPS; negative records none.
	AddressEventQPS float32
	// L2 tunes the ARP/NDP announcer (gratuitous bursts, refresh); its
	// Registerer and callbacks are set by the speaker.
	L2 l2.Config
	// Proxy, if set, programs the node's iptables in this process
	// (--proxy=iptables) from the speaker's own Service, EndpointSlice and Node
	// informers: one watch per resource for both. It runs from Run's start
	// until the handover is over; its rules outlive the process, like
	// kube-proxy's.
	Proxy *proxy.Proxier
	// Handover, if set, forwards for a while the TCP connections this node
	// does not know, to an address it took over from a node that left (a
	// planned restart), to that node, whose kernel still forwards them (see
	// "Stopping"). Run prepares it and detaches from it on the way out (its
	// forwards stay for the next process).
	Handover *handover.Forwarder
}

// Speaker is one node's agent. Create it with New and call Run once.
type Speaker struct {
	cfg     Config
	self    string
	metrics *metrics

	// Informers.
	factory   informers.SharedInformerFactory
	secretsF  informers.SharedInformerFactory
	dynF      dynamicinformer.DynamicSharedInformerFactory
	services  listerscorev1.ServiceLister
	slices    cache.Indexer
	nodes     listerscorev1.NodeLister
	pools     cache.GenericLister
	peers     cache.GenericLister
	secrets   listerscorev1.SecretLister
	hasSynced []cache.InformerSynced

	announcements *statusWriter
	sessions      *statusWriter

	recorder    record.EventRecorder
	broadcaster record.EventBroadcaster
	// eventBudget bounds the per-address BGP Events (addressEvent).
	eventBudget flowcontrol.RateLimiter

	queue workqueue.TypedInterface[item]
	mail  mailboxes

	// Set by Run (tests set fakes).
	l2        announcer
	gossip    peerSetter
	publisher claimPublisher
	bgp       *bgpApplier
	forwarder forwarder // nil: no handover forwarding

	// Only the event loop touches the election and loopState.
	e  *election.Election
	ls loopState

	// leaving freezes layer 2 and publication (planned stop).
	leaving atomic.Bool
	synced  atomic.Bool
	settled atomic.Bool
}

// item is one input for the event loop. Values that change faster than the
// loop reads them (member states, placements, conflicts) wait in mailboxes
// under their key; the queue holds each key at most once.
type item struct {
	kind itemKind
	key  string     // namespace/name or name
	ip   netip.Addr // placement, conflict
}

type itemKind uint8

const (
	kService itemKind = iota + 1
	kNode
	kPool
	kPeer
	kSecret
	kMember
	kPlacement
	kConflict
	kSettled
	kPlanDue // planBGPEvery passed: plan what the last flushes held back
)

var kindNames = map[itemKind]string{
	kService: "service", kNode: "node", kPool: "pool", kPeer: "bgppeer", kSecret: "secret",
	kMember: "member", kPlacement: "placement", kConflict: "conflict", kSettled: "settled",
}

// mailboxes hold the latest value per key of inputs from other goroutines.
type mailboxes struct {
	mu         sync.Mutex
	members    map[string]membership.Event
	placements map[netip.Addr]l2.Placement
	conflicts  map[netip.Addr]l2.Conflict
}

// serviceIndex is the EndpointSlice index by Service (namespace/name).
const serviceIndex = "service"

// New prepares a speaker: informers, status writers, Events and metrics. It
// contacts nothing; Run does.
func New(cfg Config) (*Speaker, error) {
	if cfg.NodeName == "" {
		return nil, errors.New("speaker: NodeName is required")
	}
	if cfg.Client == nil || cfg.Dynamic == nil {
		return nil, errors.New("speaker: Client and Dynamic are required")
	}
	if cfg.Namespace == "" {
		cfg.Namespace = DefaultNamespace
	}
	if cfg.LoadBalancerClass == "" {
		cfg.LoadBalancerClass = DefaultLoadBalancerClass
	}
	if cfg.MemberlistPort == 0 {
		cfg.MemberlistPort = membership.DefaultPort
	}
	if cfg.Settle == 0 {
		cfg.Settle = DefaultSettle
	}
	if cfg.LeaveGrace == 0 {
		cfg.LeaveGrace = DefaultLeaveGrace
	}
	if cfg.AddressEventQPS == 0 {
		cfg.AddressEventQPS = DefaultAddressEventQPS
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("speaker: registering metrics: %w", err)
	}
	s := &Speaker{
		cfg: cfg, self: cfg.NodeName, metrics: m,
		queue: workqueue.NewTypedWithConfig(workqueue.TypedQueueConfig[item]{Name: "speaker"}),
		mail: mailboxes{
			members:    map[string]membership.Event{},
			placements: map[netip.Addr]l2.Placement{},
			conflicts:  map[netip.Addr]l2.Conflict{},
		},
		e:           election.New(cfg.NodeName),
		ls:          newLoopState(),
		eventBudget: flowcontrol.NewFakeNeverRateLimiter(),
	}
	if cfg.AddressEventQPS > 0 {
		s.eventBudget = flowcontrol.NewTokenBucketRateLimiter(cfg.AddressEventQPS, int(10*cfg.AddressEventQPS+0.5))
	}
	s.bgp = newBGPApplier(s)
	if err := s.setupInformers(); err != nil {
		return nil, err
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	s.broadcaster = record.NewBroadcaster()
	s.recorder = s.broadcaster.NewRecorder(scheme, corev1.EventSource{Component: "ironlb-speaker", Host: cfg.NodeName})
	return s, nil
}

// stripManagedFields keeps informer caches small.
func stripManagedFields(obj any) (any, error) {
	if a, err := meta.Accessor(obj); err == nil {
		a.SetManagedFields(nil)
	}
	return obj, nil
}

func (s *Speaker) setupInformers() error {
	s.factory = informers.NewSharedInformerFactoryWithOptions(s.cfg.Client, 0, informers.WithTransform(stripManagedFields))
	s.secretsF = informers.NewSharedInformerFactoryWithOptions(s.cfg.Client, 0,
		informers.WithNamespace(s.cfg.Namespace), informers.WithTransform(stripManagedFields))
	s.dynF = dynamicinformer.NewFilteredDynamicSharedInformerFactory(s.cfg.Dynamic, 0, "", nil)

	svcInf := s.factory.Core().V1().Services()
	sliceInf := s.factory.Discovery().V1().EndpointSlices()
	nodeInf := s.factory.Core().V1().Nodes()
	secretInf := s.secretsF.Core().V1().Secrets()
	poolInf := s.dynF.ForResource(v1alpha1.IPPoolsResource)
	peerInf := s.dynF.ForResource(v1alpha1.BGPPeersResource)
	annInf := s.dynF.ForResource(v1alpha1.ServiceAnnouncementsResource)
	sessInf := s.dynF.ForResource(v1alpha1.BGPSessionsResource)
	for _, inf := range []cache.SharedIndexInformer{poolInf.Informer(), peerInf.Informer(), annInf.Informer(), sessInf.Informer()} {
		if err := inf.SetTransform(stripManagedFields); err != nil {
			return err
		}
	}
	if err := sliceInf.Informer().AddIndexers(cache.Indexers{serviceIndex: func(obj any) ([]string, error) {
		es, ok := obj.(*discoveryv1.EndpointSlice)
		if !ok {
			return nil, nil
		}
		if name := es.Labels[discoveryv1.LabelServiceName]; name != "" {
			return []string{es.Namespace + "/" + name}, nil
		}
		return nil, nil
	}}); err != nil {
		return err
	}
	s.services = svcInf.Lister()
	s.slices = sliceInf.Informer().GetIndexer()
	s.nodes = nodeInf.Lister()
	s.secrets = secretInf.Lister()
	s.pools = poolInf.Lister()
	s.peers = peerInf.Lister()

	var err error
	if s.announcements, err = newStatusWriter(s.self, v1alpha1.ServiceAnnouncementsResource, v1alpha1.ServiceAnnouncementKind,
		s.cfg.Dynamic, annInf.Informer(), s.metrics, "since"); err != nil {
		return err
	}
	if s.sessions, err = newStatusWriter(s.self, v1alpha1.BGPSessionsResource, v1alpha1.BGPSessionKind,
		s.cfg.Dynamic, sessInf.Informer(), s.metrics); err != nil {
		return err
	}

	add := func(inf cache.SharedIndexInformer, h cache.ResourceEventHandler) error {
		reg, err := inf.AddEventHandler(h)
		if err != nil {
			return err
		}
		s.hasSynced = append(s.hasSynced, reg.HasSynced)
		return nil
	}
	errs := []error{
		add(svcInf.Informer(), cache.ResourceEventHandlerFuncs{
			AddFunc: s.onService,
			UpdateFunc: func(old, cur any) {
				if serviceChanged(old, cur) {
					s.onService(cur)
				}
			},
			DeleteFunc: s.onService,
		}),
		add(sliceInf.Informer(), cache.ResourceEventHandlerFuncs{
			AddFunc:    s.onSlice,
			UpdateFunc: func(_, cur any) { s.onSlice(cur) },
			DeleteFunc: s.onSlice,
		}),
		add(nodeInf.Informer(), cache.ResourceEventHandlerFuncs{
			AddFunc: func(obj any) { s.enqueueName(kNode, obj) },
			UpdateFunc: func(old, cur any) {
				if nodeChanged(old, cur) {
					s.enqueueName(kNode, cur)
				}
			},
			DeleteFunc: func(obj any) { s.enqueueName(kNode, obj) },
		}),
		add(poolInf.Informer(), nameHandler(s, kPool)),
		add(peerInf.Informer(), nameHandler(s, kPeer)),
		add(secretInf.Informer(), nameHandler(s, kSecret)),
	}
	s.hasSynced = append(s.hasSynced, annInf.Informer().HasSynced, sessInf.Informer().HasSynced)
	return errors.Join(errs...)
}

func nameHandler(s *Speaker, k itemKind) cache.ResourceEventHandlerFuncs {
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { s.enqueueName(k, obj) },
		UpdateFunc: func(_, cur any) { s.enqueueName(k, cur) },
		DeleteFunc: func(obj any) { s.enqueueName(k, obj) },
	}
}

func (s *Speaker) enqueueName(k itemKind, obj any) {
	key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	if err != nil {
		return
	}
	if k == kSecret {
		_, key, _ = cache.SplitMetaNamespaceKey(key)
	}
	s.queue.Add(item{kind: k, key: key})
}

func (s *Speaker) onService(obj any) {
	if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
		s.queue.Add(item{kind: kService, key: key})
	}
}

// onSlice enqueues the Service of an EndpointSlice, if the speaker handles it
// (endpoint churn of other Services costs one lookup).
func (s *Speaker) onSlice(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	es, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return
	}
	name := es.Labels[discoveryv1.LabelServiceName]
	if name == "" {
		return
	}
	svc, err := s.services.Services(es.Namespace).Get(name)
	if err != nil || !handled(svc, s.cfg.LoadBalancerClass) {
		return
	}
	s.queue.Add(item{kind: kService, key: es.Namespace + "/" + name})
}

// serviceChanged reports whether an update matters to announcing.
func serviceChanged(old, cur any) bool {
	o, ok1 := old.(*corev1.Service)
	c, ok2 := cur.(*corev1.Service)
	if !ok1 || !ok2 {
		return true
	}
	// The deletion timestamp is the first sign of a delete when a finalizer
	// (the controller's load-balancer-cleanup) keeps the object: the address
	// is withdrawn then, not once the controller has processed the delete.
	return (o.DeletionTimestamp == nil) != (c.DeletionTimestamp == nil) ||
		o.Spec.Type != c.Spec.Type ||
		!ptrEqual(o.Spec.LoadBalancerClass, c.Spec.LoadBalancerClass) ||
		o.Spec.ExternalTrafficPolicy != c.Spec.ExternalTrafficPolicy ||
		o.Annotations[allocator.AnnotationAllocatedFromPool] != c.Annotations[allocator.AnnotationAllocatedFromPool] ||
		!ingressEqual(o.Status.LoadBalancer.Ingress, c.Status.LoadBalancer.Ingress)
}

func ptrEqual[T comparable](a, b *T) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

func ingressEqual(a, b []corev1.LoadBalancerIngress) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].IP != b[i].IP {
			return false
		}
	}
	return true
}

// nodeChanged reports whether a Node update matters: labels, readiness or
// addresses (not heartbeats).
func nodeChanged(old, cur any) bool {
	o, ok1 := old.(*corev1.Node)
	c, ok2 := cur.(*corev1.Node)
	if !ok1 || !ok2 {
		return true
	}
	if election.NodeFromObject(o).Ready != election.NodeFromObject(c).Ready || len(o.Labels) != len(c.Labels) {
		return true
	}
	for k, v := range o.Labels {
		if w, ok := c.Labels[k]; !ok || w != v {
			return true
		}
	}
	a, b := nodeAddresses(o), nodeAddresses(c)
	if len(a) != len(b) {
		return true
	}
	for i := range a {
		if a[i] != b[i] {
			return true
		}
	}
	return false
}

// Run starts the informers, waits for them, joins the other speakers and
// announces until ctx ends; then it hands its addresses over (see the package
// documentation, "Stopping") and returns.
func (s *Speaker) Run(ctx context.Context) error {
	work, stopWork := context.WithCancel(context.Background())
	defer stopWork()
	s.broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: s.cfg.Client.CoreV1().Events("")})
	defer s.broadcaster.Shutdown()

	s.factory.Start(work.Done())
	s.secretsF.Start(work.Done())
	s.dynF.Start(work.Done())
	defer s.queue.ShutDown()
	if !cache.WaitForNamedCacheSyncWithContext(ctx, s.hasSynced...) {
		return ctx.Err()
	}
	s.synced.Store(true)
	klog.InfoS("Informers synced", "node", s.self)

	nodeIP := s.cfg.NodeIP
	if !nodeIP.IsValid() {
		n, err := s.nodes.Get(s.self)
		if err != nil {
			return fmt.Errorf("speaker: reading Node %s for its InternalIP (or pass --node-ip): %w", s.self, err)
		}
		addrs := nodeAddresses(n)
		if len(addrs) == 0 {
			return fmt.Errorf("speaker: Node %s has no InternalIP (pass --node-ip)", s.self)
		}
		nodeIP = addrs[0]
	}
	s.cfg.NodeIP = nodeIP

	a, err := s.newAnnouncer()
	if err != nil {
		return err
	}
	s.l2 = a
	if h := s.cfg.Handover; h != nil {
		// Forward refuses addresses until Prepare is done (a takeover in
		// the first moments is not forwarded).
		s.forwarder = h
		go s.prepareHandover(work, h)
	}
	l2ctx, stopL2 := context.WithCancel(context.Background())
	defer stopL2()
	go func() {
		if err := a.Run(l2ctx); err != nil {
			klog.ErrorS(err, "L2 announcer stopped")
		}
	}()

	s.bgp.routerID = routerID(s.cfg.NodeIP, s.self, s.nodes)
	bgpDone := make(chan struct{})
	go func() {
		defer close(bgpDone)
		s.bgp.run(work)
	}()

	go s.announcements.run(work)
	go s.sessions.run(work)
	if p := s.cfg.Proxy; p != nil {
		inf := proxy.Informers{
			Services:       s.factory.Core().V1().Services(),
			EndpointSlices: s.factory.Discovery().V1().EndpointSlices(),
			Nodes:          s.factory.Core().V1().Nodes(),
		}
		go func() {
			if err := p.Run(work, inf); err != nil {
				klog.ErrorS(err, "Proxy stopped")
			}
		}()
	}

	members, err := membership.New(membership.Config{
		NodeName: s.self, Addr: nodeIP, Port: s.cfg.MemberlistPort,
		Key: s.cfg.MemberlistKey, Registerer: s.cfg.Registerer,
	})
	if err != nil {
		return fmt.Errorf("speaker: starting memberlist on %s:%d: %w", nodeIP, s.cfg.MemberlistPort, err)
	}
	s.gossip = members
	pub := newPublisher(members)
	s.publisher = pub
	go pub.run(work)
	go s.loop() // the inputs queued since the informers started are processed now
	go func() {
		for ev := range members.Events() {
			s.mail.mu.Lock()
			s.mail.members[ev.Member.Name] = ev
			s.mail.mu.Unlock()
			s.queue.Add(item{kind: kMember, key: ev.Member.Name})
		}
	}()
	peers := s.memberPeers()
	joinCtx, cancelJoin := context.WithTimeout(ctx, 5*time.Second)
	n, err := members.Join(joinCtx, peers)
	cancelJoin()
	if err != nil {
		klog.InfoS("Joined no speaker (the others may be starting too); rejoining in the background", "peers", len(peers), "err", err)
	} else {
		klog.InfoS("Joined the speakers", "answered", n, "peers", len(peers))
	}
	members.SetPeers(peers)
	settle := time.AfterFunc(s.cfg.Settle, func() { s.queue.Add(item{kind: kSettled}) })
	defer settle.Stop()

	<-ctx.Done()
	s.stop(members, bgpDone)
	return nil
}

// prepareHandover prepares the handover forwarding; with the in-process
// proxy only after its first sync, since the proxy inserts its jump at the
// top of nat PREROUTING then, and the handover's must stay above it.
func (s *Speaker) prepareHandover(ctx context.Context, h *handover.Forwarder) {
	if p := s.cfg.Proxy; p != nil {
		for !p.Healthy() {
			select {
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	if err := h.Prepare(ctx); err != nil {
		klog.ErrorS(err, "Handover forwarding not available for some families")
	}
}

// stop is the planned-stop handover: keep answering, withdraw BGP, leave
// memberlist so the others take over at once, answer for a grace period, then
// stop answering and remove this node's status objects.
func (s *Speaker) stop(members *membership.Cluster, bgpDone <-chan struct{}) {
	start := time.Now()
	s.leaving.Store(true) // freezes layer 2 and publication
	s.publisher.stop()
	s.bgp.stop()
	if err := members.Leave(2 * time.Second); err != nil {
		klog.ErrorS(err, "Leaving memberlist")
	}
	klog.InfoS("Left the speakers; answering during the grace period", "grace", s.cfg.LeaveGrace, "owned", len(s.l2.Status()))
	time.Sleep(s.cfg.LeaveGrace)
	_ = s.l2.Close()
	if h := s.cfg.Handover; h != nil {
		// The forwards stay in the kernel: the node may be relaying
		// connections handed over twice in a rolling restart, and the next
		// speaker process adopts them.
		h.Detach()
	}
	select {
	case <-bgpDone:
	case <-time.After(5 * time.Second):
		klog.InfoS("BGP withdrawal still running after 5s; exiting anyway")
	}
	_ = members.Shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := errors.Join(s.announcements.deleteOwn(ctx), s.sessions.deleteOwn(ctx)); err != nil {
		klog.InfoS("Could not remove this node's status objects (another speaker will)", "err", err)
	}
	klog.InfoS("Stopped", "node", s.self, "took", time.Since(start).Round(time.Millisecond))
}

// Ready returns nil once the speaker announces: informers synced, memberlist
// joined and settled, the BGP sessions configured (when any BGPPeer selects
// this node) and, with Config.Proxy, its iptables rules in sync. Otherwise it
// says what it waits for.
func (s *Speaker) Ready() error {
	switch {
	case !s.synced.Load():
		return errors.New("informers not synced")
	case !s.settled.Load():
		return errors.New("memberlist not joined and settled")
	case s.leaving.Load():
		return errors.New("stopping")
	case !s.bgp.configured():
		return errors.New("BGP sessions not configured yet")
	case s.cfg.Proxy != nil && !s.cfg.Proxy.Healthy():
		return errors.New("proxy: iptables not synced")
	}
	return nil
}

// memberPeers returns every Node's memberlist address.
func (s *Speaker) memberPeers() []netip.AddrPort {
	nodes, err := s.nodes.List(everything)
	if err != nil {
		return nil
	}
	var out []netip.AddrPort
	for _, n := range nodes {
		if a, ok := memberAddr(n, s.cfg.NodeIP); ok && n.Name != s.self {
			out = append(out, netip.AddrPortFrom(a, uint16(s.cfg.MemberlistPort)))
		}
	}
	return out
}

// routerID is the BGP identifier: the node's IPv4 address, else its Node's
// first IPv4 InternalIP, else 32 bits of a hash of the node name (any unique
// non-zero value is valid).
func routerID(nodeIP netip.Addr, node string, nodes listerscorev1.NodeLister) netip.Addr {
	if nodeIP.Is4() {
		return nodeIP
	}
	if n, err := nodes.Get(node); err == nil {
		for _, a := range nodeAddresses(n) {
			if a.Is4() {
				return a
			}
		}
	}
	sum := sha256.Sum256([]byte(node))
	sum[0] |= 1 // never 0.x.x.x
	return netip.AddrFrom4([4]byte(sum[:4]))
}

// Cleanup deletes the ServiceAnnouncements and BGPSessions of node (what
// --cleanup does; a running speaker recreates what it announces).
func Cleanup(ctx context.Context, dyn dynamic.Interface, node string) error {
	var errs []error
	if err := deleteNodeObjects(ctx, dyn.Resource(v1alpha1.ServiceAnnouncementsResource), node); err != nil && !apierrors.IsNotFound(err) {
		errs = append(errs, fmt.Errorf("ServiceAnnouncements: %w", err))
	}
	if err := deleteNodeObjects(ctx, dyn.Resource(v1alpha1.BGPSessionsResource), node); err != nil && !apierrors.IsNotFound(err) {
		errs = append(errs, fmt.Errorf("BGPSessions: %w", err))
	}
	return errors.Join(errs...)
}

// fromUnstructured decodes an informer object of a dynamic informer.
func fromUnstructured[T any](obj any) (*T, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return nil, fmt.Errorf("not an unstructured object: %T", obj)
	}
	out := new(T)
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, out); err != nil {
		return nil, err
	}
	return out, nil
}
