package provider

import (
	"context"
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/util/retry"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"

	"github.com/ironlb/ironlb/api/v1alpha1"
)

// coalesce is how long a pool's status waits for more changes before it is written:
// a burst of allocations costs one status write per pool, not one per Service.
const coalesce = 200 * time.Millisecond

// poolStatusWriter publishes IPPool status (counts and conditions) and the per-pool
// metrics. Pools are marked dirty by allocations, releases and pool edits.
type poolStatusWriter struct {
	c     *Cloud
	queue workqueue.TypedRateLimitingInterface[string]
}

func newPoolStatusWriter(c *Cloud) *poolStatusWriter {
	return &poolStatusWriter{c: c, queue: workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.DefaultTypedControllerRateLimiter[string](),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "ippool-status"})}
}

func (w *poolStatusWriter) markPools(names ...string) {
	for _, n := range names {
		if n != "" {
			w.queue.AddAfter(n, coalesce)
		}
	}
}

func (w *poolStatusWriter) markAll() {
	w.markPools(w.c.poolStore.ListKeys()...) // cluster-scoped: the key is the name
}

func (w *poolStatusWriter) run(ctx context.Context) {
	go func() { <-ctx.Done(); w.queue.ShutDown() }()
	for {
		name, quit := w.queue.Get()
		if quit {
			return
		}
		if err := w.sync(ctx, name); err != nil {
			klog.ErrorS(err, "Writing IPPool status", "ippool", name)
			w.queue.AddRateLimited(name)
		} else {
			w.queue.Forget(name)
		}
		w.queue.Done(name)
	}
}

func (w *poolStatusWriter) sync(ctx context.Context, name string) error {
	obj, exists, err := w.c.poolStore.GetByKey(name)
	if err != nil || !exists {
		return err
	}
	pool, err := poolFromObject(obj)
	if err != nil {
		return err
	}
	// The informer's copy may be older than the stored object (another writer, or
	// our previous write not yet seen): on a conflict, read the current object and
	// try again, so the status always converges to the allocator's counts.
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		want := w.c.PoolStatus(pool)
		if equality.Semantic.DeepEqual(want, pool.Status) {
			return nil
		}
		pool.Status = want
		content, err := runtime.DefaultUnstructuredConverter.ToUnstructured(pool)
		if err != nil {
			return err
		}
		_, err = w.c.dyn.Resource(v1alpha1.IPPoolsResource).UpdateStatus(ctx, &unstructured.Unstructured{Object: content}, metav1.UpdateOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if apierrors.IsConflict(err) {
			u, gerr := w.c.dyn.Resource(v1alpha1.IPPoolsResource).Get(ctx, name, metav1.GetOptions{})
			if gerr != nil {
				return gerr
			}
			if pool, gerr = poolFromObject(u); gerr != nil {
				return gerr
			}
		}
		return err
	})
}

// PoolStatus computes the status the controller publishes for pool: counts from the
// allocator and the Valid, Overlapping, Exhausted and OrphanedAddresses conditions.
// Conditions keep their transition times when unchanged. It also updates the metrics.
func (c *Cloud) PoolStatus(pool *v1alpha1.IPPool) v1alpha1.IPPoolStatus {
	st := v1alpha1.IPPoolStatus{
		ObservedGeneration: pool.Generation,
		Conditions:         append([]metav1.Condition(nil), pool.Status.Conditions...),
	}
	set := func(t string, ok bool, reason, msg string) {
		s := metav1.ConditionFalse
		if ok {
			s = metav1.ConditionTrue
		}
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{
			Type: t, Status: s, Reason: reason, Message: msg, ObservedGeneration: pool.Generation,
		})
	}
	if why, valid := c.poolValidity(pool.Name); !valid {
		set(v1alpha1.ConditionValid, false, "InvalidSpec", why)
		return st
	}
	set(v1alpha1.ConditionValid, true, "Loaded", "the allocator uses this pool")
	s, _ := c.alloc.Stats(pool.Name)
	st.TotalIPv4, st.AssignedIPv4, st.AvailableIPv4 = s.TotalIPv4, s.AssignedIPv4, s.AvailableIPv4
	st.TotalIPv6, st.AssignedIPv6, st.AvailableIPv6 = s.TotalIPv6, s.AssignedIPv6, s.AvailableIPv6
	st.Assigned = satAdd(s.AssignedIPv4, s.AssignedIPv6)
	st.Available = satAdd(s.AvailableIPv4, s.AvailableIPv6)
	c.metrics.setPool(pool.Name, s.TotalIPv4, s.AssignedIPv4, s.TotalIPv6, s.AssignedIPv6)

	if others := c.alloc.Overlaps(pool.Name); len(others) > 0 {
		set(v1alpha1.ConditionOverlapping, true, "SharesAddresses",
			"shares addresses with IPPool(s) "+strings.Join(others, ", ")+"; each address is still given to one Service only")
	} else {
		set(v1alpha1.ConditionOverlapping, false, "NoOverlap", "no other pool holds these addresses")
	}
	var full []string
	if s.TotalIPv4 > 0 && s.AvailableIPv4 == 0 {
		full = append(full, "IPv4")
	}
	if s.TotalIPv6 > 0 && s.AvailableIPv6 == 0 {
		full = append(full, "IPv6")
	}
	switch {
	case s.TotalIPv4 == 0 && s.TotalIPv6 == 0:
		set(v1alpha1.ConditionExhausted, true, "NoUsableAddress", "the pool has no address it may hand out (avoidBuggyIPs excludes every one)")
	case len(full) > 0:
		set(v1alpha1.ConditionExhausted, true, "NoFreeAddress", "no free "+strings.Join(full, " or ")+" address")
	default:
		set(v1alpha1.ConditionExhausted, false, "FreeAddresses", "addresses are available")
	}
	if s.Orphaned > 0 {
		set(v1alpha1.ConditionOrphanedAddresses, true, "AddressesOutsidePool",
			fmt.Sprintf("%d address(es) given from this pool are no longer in its spec; their Services keep them", s.Orphaned))
	} else {
		meta.RemoveStatusCondition(&st.Conditions, v1alpha1.ConditionOrphanedAddresses)
	}
	return st
}

func satAdd(a, b int64) int64 {
	if s := a + b; s >= a {
		return s
	}
	return 1<<63 - 1
}
