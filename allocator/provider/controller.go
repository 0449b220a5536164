package provider

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	cloudprovider "k8s.io/cloud-provider"
	"k8s.io/cloud-provider/api"
	servicehelper "k8s.io/cloud-provider/service/helpers"
	"k8s.io/klog/v2"

	"github.com/ironlb/ironlb/allocator"
)

// Results of one sync, the label values of ironlb_controller_syncs_total.
const (
	resultPublished = "published" // status, finalizer or attribution written
	resultUnchanged = "unchanged" // allocation confirmed, nothing to write
	resultRefused   = "refused"   // no address (Event on the Service)
	resultCleaned   = "cleaned"   // released and finalizer removed
	resultDeleted   = "deleted"   // gone from the API; released
	resultIgnored   = "ignored"   // not ironlb's (another class, or never published)
	resultError     = "error"     // API error; retried with backoff
)

// ServiceController is ironlb's Service controller. It replaces the stock
// cloud-provider service controller because that one strips the cleanup finalizer
// from deleted Services of any class, writes a Service up to three times per
// allocation (finalizer, status, Events) and runs one worker by default.
//
// It serves LoadBalancer Services of the Cloud's classes through the
// cloudprovider.LoadBalancer interface. Per Service it makes at most one API write:
// a strategic-merge PATCH of the status subresource that sets
// status.loadBalancer.ingress, the service.kubernetes.io/load-balancer-cleanup
// finalizer and the allocator.AnnotationAllocatedFromPool attribution together (the
// Service status subresource persists metadata changes; it resets only spec). A
// Service that already carries all three costs no write, so a restart writes
// nothing for unchanged Services. When a Service is deleted or leaves ironlb (type
// change), its addresses are released and one PATCH removes the finalizer, the
// attribution and the published status. Services of other classes are never
// written.
//
// Concurrency is bounded by the number of workers; the API server protects itself
// with API Priority and Fairness. Refused Services are retried when a pool or
// namespace changes or an address is released, and otherwise after
// Options.RetryAfter.
type ServiceController struct {
	cloud   *Cloud
	lb      cloudprovider.LoadBalancer
	client  kubernetes.Interface
	lister  corelisters.ServiceLister
	synced  cache.InformerSynced
	queue   workqueue.TypedRateLimitingInterface[string]
	metrics *Metrics
	done    chan struct{}
}

// NewServiceController watches Services through informer (it adds an event
// handler; the caller starts the informer factory, which should be the one given
// to the Cloud so that Services are watched once) and writes with client.
func NewServiceController(cloud *Cloud, client kubernetes.Interface, informer coreinformers.ServiceInformer) (*ServiceController, error) {
	sc := &ServiceController{
		cloud:   cloud,
		lb:      cloud,
		client:  client,
		lister:  informer.Lister(),
		synced:  informer.Informer().HasSynced,
		metrics: cloud.metrics,
		done:    make(chan struct{}),
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](50*time.Millisecond, time.Minute),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "ironlb-services"}),
	}
	_, err := informer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: sc.enqueue,
		UpdateFunc: func(old, obj any) {
			if sc.interesting(old) || sc.interesting(obj) {
				sc.add(obj)
			}
		},
		DeleteFunc: sc.enqueue,
	})
	if err != nil {
		return nil, fmt.Errorf("watching Services: %w", err)
	}
	return sc, nil
}

// interesting filters out the bulk of Services (ClusterIP without any ironlb mark)
// before they reach the queue.
func (sc *ServiceController) interesting(obj any) bool {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	svc, ok := obj.(*v1.Service)
	if !ok {
		return false
	}
	if svc.Spec.Type == v1.ServiceTypeLoadBalancer || servicehelper.HasLBFinalizer(svc) || sc.cloud.publishedBy(svc) {
		return true
	}
	_, held := sc.cloud.alloc.Lookup(allocator.ServiceKey(svc))
	return held
}

func (sc *ServiceController) enqueue(obj any) {
	if sc.interesting(obj) {
		sc.add(obj)
	}
}

func (sc *ServiceController) add(obj any) {
	if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
		sc.queue.Add(key)
	}
}

// Done is closed when Run has returned, with every sync finished: after that the
// controller writes nothing (the lease can be handed over).
func (sc *ServiceController) Done() <-chan struct{} { return sc.done }

// Run processes Services with workers goroutines once the Cloud is ready, until
// ctx ends; it returns after the syncs in flight have finished.
func (sc *ServiceController) Run(ctx context.Context, workers int) {
	defer close(sc.done)
	defer utilruntime.HandleCrash()
	klog.InfoS("Starting ironlb Service controller", "class", sc.cloud.opts.LoadBalancerClass, "classless", !sc.cloud.opts.IgnoreClassless, "workers", workers)
	if !cache.WaitForNamedCacheSyncWithContext(ctx, sc.synced) {
		sc.queue.ShutDown()
		return
	}
	select {
	case <-sc.cloud.Ready():
	case <-ctx.Done():
		sc.queue.ShutDown()
		return
	}
	var wg sync.WaitGroup
	for range max(workers, 1) {
		wg.Go(func() {
			for sc.processNext(ctx) {
			}
		})
	}
	wg.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-sc.cloud.changed:
				for _, k := range sc.cloud.refusedKeys() {
					sc.queue.Add(k)
				}
			}
		}
	})
	<-ctx.Done()
	sc.queue.ShutDown()
	wg.Wait()
	klog.InfoS("ironlb Service controller stopped")
}

func (sc *ServiceController) processNext(ctx context.Context) bool {
	key, quit := sc.queue.Get()
	if quit {
		return false
	}
	defer sc.queue.Done(key)
	start := time.Now()
	result, err := sc.sync(ctx, key)
	var retry *api.RetryError
	var refusal *allocator.Error
	switch {
	case err == nil:
		sc.queue.Forget(key)
	case errors.As(err, &retry):
		result = resultRefused
		sc.queue.Forget(key)
		sc.queue.AddAfter(key, retry.RetryAfter())
	case errors.As(err, &refusal):
		// Only an edit of the Service can cure it; its update event requeues it.
		result = resultRefused
		sc.queue.Forget(key)
	case ctx.Err() != nil:
		result = resultError // shutting down; the next leader redoes it
	default:
		result = resultError
		klog.ErrorS(err, "Syncing LoadBalancer Service", "service", key)
		sc.queue.AddRateLimited(key)
	}
	sc.metrics.synced(result, time.Since(start))
	return true
}

func (sc *ServiceController) sync(ctx context.Context, key string) (string, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return resultIgnored, nil
	}
	svc, err := sc.lister.Services(ns).Get(name)
	if apierrors.IsNotFound(err) {
		sc.cloud.releaseDeleted(key)
		return resultDeleted, nil
	}
	if err != nil {
		return resultError, err
	}
	if held, ok := sc.cloud.alloc.Lookup(key); ok && held.UID != "" && svc.UID != "" && held.UID != svc.UID {
		sc.cloud.release(key, held.UID, serviceRef(ns, name, held.UID), "deleted; a new Service with the same name exists")
	}
	switch {
	case svc.DeletionTimestamp == nil && sc.cloud.serves(svc):
		return sc.ensure(ctx, svc)
	case sc.cloud.owns(svc):
		return sc.cleanup(ctx, svc)
	default:
		return resultIgnored, nil
	}
}

func (sc *ServiceController) ensure(ctx context.Context, svc *v1.Service) (string, error) {
	st, err := sc.lb.EnsureLoadBalancer(ctx, "", svc, nil)
	if err != nil {
		return resultRefused, err
	}
	al, _ := sc.cloud.alloc.Lookup(allocator.ServiceKey(svc))
	patch, err := publishPatch(svc, st, allocator.PoolAnnotation(al))
	if err != nil || patch == nil {
		return resultUnchanged, err
	}
	return resultPublished, sc.patch(ctx, svc, patch)
}

func (sc *ServiceController) cleanup(ctx context.Context, svc *v1.Service) (string, error) {
	if err := sc.lb.EnsureLoadBalancerDeleted(ctx, "", svc); err != nil {
		return resultError, err
	}
	patch, err := cleanupPatch(svc)
	if err != nil || patch == nil {
		return resultCleaned, err
	}
	return resultCleaned, sc.patch(ctx, svc, patch)
}

func (sc *ServiceController) patch(ctx context.Context, svc *v1.Service, patch []byte) error {
	_, err := sc.client.CoreV1().Services(svc.Namespace).Patch(ctx, svc.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status")
	sc.metrics.wrote()
	if apierrors.IsNotFound(err) {
		return nil // deleted meanwhile; its delete event releases
	}
	if err != nil {
		return fmt.Errorf("patching Service %s/%s: %w", svc.Namespace, svc.Name, err)
	}
	return nil
}

// publishPatch returns the strategic-merge patch (for the status subresource) that
// makes svc carry st, the cleanup finalizer and the pool attribution, or nil when
// it already does. The finalizer list merges (other finalizers stay), annotations
// merge, and the ingress list is replaced as a whole.
func publishPatch(svc *v1.Service, st *v1.LoadBalancerStatus, poolAnnotation string) ([]byte, error) {
	meta := map[string]any{}
	if !servicehelper.HasLBFinalizer(svc) {
		meta["finalizers"] = []string{servicehelper.LoadBalancerCleanupFinalizer}
	}
	if cur, ok := svc.Annotations[allocator.AnnotationAllocatedFromPool]; poolAnnotation != "" && (!ok || cur != poolAnnotation) {
		meta["annotations"] = map[string]any{allocator.AnnotationAllocatedFromPool: poolAnnotation}
	}
	patch := map[string]any{}
	if len(meta) > 0 {
		patch["metadata"] = meta
	}
	if !ingressEqual(svc.Status.LoadBalancer.Ingress, st.Ingress) {
		patch["status"] = map[string]any{"loadBalancer": map[string]any{"ingress": st.Ingress}}
	}
	if len(patch) == 0 {
		return nil, nil
	}
	return json.Marshal(patch)
}

// cleanupPatch returns the strategic-merge patch that removes what ironlb put on
// svc (the cleanup finalizer, the attribution and the published addresses), or nil
// when there is nothing left.
func cleanupPatch(svc *v1.Service) ([]byte, error) {
	meta := map[string]any{}
	if servicehelper.HasLBFinalizer(svc) {
		meta["$deleteFromPrimitiveList/finalizers"] = []string{servicehelper.LoadBalancerCleanupFinalizer}
	}
	if _, ok := svc.Annotations[allocator.AnnotationAllocatedFromPool]; ok {
		meta["annotations"] = map[string]any{allocator.AnnotationAllocatedFromPool: nil}
	}
	patch := map[string]any{}
	if len(meta) > 0 {
		patch["metadata"] = meta
	}
	if len(svc.Status.LoadBalancer.Ingress) > 0 {
		patch["status"] = map[string]any{"loadBalancer": map[string]any{"ingress": nil}}
	}
	if len(patch) == 0 {
		return nil, nil
	}
	return json.Marshal(patch)
}

func ingressEqual(a, b []v1.LoadBalancerIngress) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		am, bm := a[i].IPMode, b[i].IPMode
		if a[i].IP != b[i].IP || a[i].Hostname != b[i].Hostname || (am == nil) != (bm == nil) || (am != nil && *am != *bm) || len(a[i].Ports) != len(b[i].Ports) {
			return false
		}
	}
	return true
}
