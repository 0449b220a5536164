package provider

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/cloud-provider/api"
	servicehelper "k8s.io/cloud-provider/service/helpers"
	"k8s.io/klog/v2"

	"github.com/ironlb/ironlb/allocator"
)

// ClassController serves LoadBalancer Services whose spec.loadBalancerClass is the
// Cloud's class. The stock service controller skips every Service with a class, so this
// controller repeats its contract for ironlb's class with the same Cloud methods: it adds
// the service.kubernetes.io/load-balancer-cleanup finalizer, publishes
// status.loadBalancer, and on deletion or type change releases the addresses before
// removing the finalizer.
type ClassController struct {
	cloud  *Cloud
	client kubernetes.Interface
	lister corelisters.ServiceLister
	synced cache.InformerSynced
	queue  workqueue.TypedRateLimitingInterface[string]
}

// NewClassController watches Services through informer (it adds an event handler;
// the caller starts the informer factory).
func NewClassController(cloud *Cloud, client kubernetes.Interface, informer coreinformers.ServiceInformer) (*ClassController, error) {
	cc := &ClassController{
		cloud:  cloud,
		client: client,
		lister: informer.Lister(),
		synced: informer.Informer().HasSynced,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](100*time.Millisecond, 5*time.Minute),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "ironlb-class-service"}),
	}
	_, err := informer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    cc.enqueue,
		UpdateFunc: func(_, obj any) { cc.enqueue(obj) },
		DeleteFunc: cc.enqueue,
	})
	if err != nil {
		return nil, fmt.Errorf("watching Services: %w", err)
	}
	return cc, nil
}

func (cc *ClassController) enqueue(obj any) {
	if svc, ok := obj.(*v1.Service); ok && !cc.relevant(svc) {
		return
	}
	key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	if err == nil {
		cc.queue.Add(key)
	}
}

// relevant: a Service of our class, or one that carries the cleanup finalizer while we
// hold addresses for it (it left LoadBalancer type, so its class was cleared).
func (cc *ClassController) relevant(svc *v1.Service) bool {
	if svc.Spec.LoadBalancerClass != nil {
		return *svc.Spec.LoadBalancerClass == cc.cloud.opts.LoadBalancerClass
	}
	if svc.Spec.Type == v1.ServiceTypeLoadBalancer {
		return false // class-less: the stock service controller's
	}
	_, held := cc.cloud.alloc.Lookup(allocator.ServiceKey(svc))
	return held && servicehelper.HasLBFinalizer(svc)
}

// Run processes Services with workers goroutines until ctx ends.
func (cc *ClassController) Run(ctx context.Context, workers int) {
	defer utilruntime.HandleCrash()
	defer cc.queue.ShutDown()
	klog.InfoS("Starting LoadBalancer class controller", "class", cc.cloud.opts.LoadBalancerClass)
	if !cache.WaitForNamedCacheSyncWithContext(ctx, cc.synced) {
		return
	}
	for range workers {
		go wait.UntilWithContext(ctx, cc.worker, time.Second)
	}
	<-ctx.Done()
}

func (cc *ClassController) worker(ctx context.Context) {
	for {
		key, quit := cc.queue.Get()
		if quit {
			return
		}
		err := cc.sync(ctx, key)
		var retry *api.RetryError
		switch {
		case err == nil:
			cc.queue.Forget(key)
		case errors.As(err, &retry):
			cc.queue.Forget(key)
			cc.queue.AddAfter(key, retry.RetryAfter())
		default:
			klog.ErrorS(err, "Syncing LoadBalancer Service", "service", key)
			cc.queue.AddRateLimited(key)
		}
		cc.queue.Done(key)
	}
}

func (cc *ClassController) sync(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	svc, err := cc.lister.Services(ns).Get(name)
	if apierrors.IsNotFound(err) {
		cc.cloud.alloc.Release(key) // the Cloud's delete handler emits the event
		return nil
	}
	if err != nil {
		return err
	}
	if !cc.relevant(svc) {
		return nil
	}
	if svc.DeletionTimestamp != nil || svc.Spec.Type != v1.ServiceTypeLoadBalancer {
		return cc.cleanup(ctx, svc)
	}
	if !servicehelper.HasLBFinalizer(svc) {
		updated := svc.DeepCopy()
		updated.Finalizers = append(updated.Finalizers, servicehelper.LoadBalancerCleanupFinalizer)
		if svc, err = servicehelper.PatchService(cc.client.CoreV1(), svc, updated); err != nil {
			return fmt.Errorf("adding the cleanup finalizer: %w", err)
		}
	}
	st, err := cc.cloud.EnsureLoadBalancer(ctx, "", svc, nil)
	if err != nil {
		return err
	}
	return cc.patchStatus(svc, st)
}

func (cc *ClassController) cleanup(ctx context.Context, svc *v1.Service) error {
	if err := cc.cloud.EnsureLoadBalancerDeleted(ctx, "", svc); err != nil {
		return err
	}
	if err := cc.patchStatus(svc, &v1.LoadBalancerStatus{}); err != nil {
		return err
	}
	if !servicehelper.HasLBFinalizer(svc) {
		return nil
	}
	updated := svc.DeepCopy()
	updated.Finalizers = slices.DeleteFunc(updated.Finalizers, func(f string) bool {
		return f == servicehelper.LoadBalancerCleanupFinalizer
	})
	updated.Status.LoadBalancer = v1.LoadBalancerStatus{}
	_, err := servicehelper.PatchService(cc.client.CoreV1(), svc, updated)
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

func (cc *ClassController) patchStatus(svc *v1.Service, st *v1.LoadBalancerStatus) error {
	if servicehelper.LoadBalancerStatusEqual(&svc.Status.LoadBalancer, st) {
		return nil
	}
	updated := svc.DeepCopy()
	updated.Status.LoadBalancer = *st
	_, err := servicehelper.PatchService(cc.client.CoreV1(), svc, updated)
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}
