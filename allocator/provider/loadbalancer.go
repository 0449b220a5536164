package provider

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	cloudprovider "k8s.io/cloud-provider"
	"k8s.io/cloud-provider/api"
	"k8s.io/klog/v2"

	"github.com/ironlb/ironlb/allocator"
)

var everything = labels.Everything()

// Event reasons emitted besides the allocator's refusal reasons (allocator.Reason*).
const (
	ReasonIPAllocated      = "IPAllocated"
	ReasonIPReleased       = "IPReleased"
	ReasonAddressNotInPool = "AddressNotInPool"
)

func (c *Cloud) waitReady(ctx context.Context) error {
	select {
	case <-c.ready:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("ironlb allocator not ready yet (rebuilding from the cluster): %w", ctx.Err())
	}
}

// GetLoadBalancer reports the addresses svc holds.
func (c *Cloud) GetLoadBalancer(ctx context.Context, _ string, svc *v1.Service) (*v1.LoadBalancerStatus, bool, error) {
	if err := c.waitReady(ctx); err != nil {
		return nil, false, err
	}
	a, ok := c.alloc.Lookup(allocator.ServiceKey(svc))
	if !ok || (a.UID != "" && svc.UID != "" && a.UID != svc.UID) {
		return nil, false, nil
	}
	return statusFor(a.IPs), true, nil
}

// GetLoadBalancerName returns the conventional name derived from the Service UID.
func (c *Cloud) GetLoadBalancerName(_ context.Context, _ string, svc *v1.Service) string {
	return cloudprovider.DefaultLoadBalancerName(svc)
}

// retryable are the refusals that a pool edit, a namespace label change or another
// Service's release can cure; the others need an edit of the Service itself.
var retryable = []string{
	allocator.ReasonPoolExhausted, allocator.ReasonNoPools, allocator.ReasonPoolNotFound,
	allocator.ReasonIPInUse, allocator.ReasonIPOutsidePools, allocator.ReasonPoolNotAllowed,
	allocator.ReasonFamilyUnavailable,
}

// EnsureLoadBalancer allocates (or confirms) the addresses of svc and returns them as
// ingress entries with ipMode VIP. A refusal is reported as a Warning Event on the
// Service whose reason is the allocator's (PoolExhausted, IPInUse, ...), once per
// distinct refusal; refusals that a pool edit or another Service's release can cure
// return an api.RetryError, the others the *allocator.Error itself. A refused change
// keeps the addresses the Service holds.
func (c *Cloud) EnsureLoadBalancer(ctx context.Context, _ string, svc *v1.Service, _ []*v1.Node) (*v1.LoadBalancerStatus, error) {
	if err := c.waitReady(ctx); err != nil {
		return nil, err
	}
	key := allocator.ServiceKey(svc)
	before, had := c.alloc.Lookup(key)
	if had && before.UID != "" && svc.UID != "" && before.UID != svc.UID {
		// The old incarnation's deletion was not processed yet: release it through
		// the one release path, then allocate for the new Service.
		c.release(key, before.UID, serviceRef(svc.Namespace, svc.Name, before.UID), "deleted; a new Service with the same name exists")
		before, had = allocator.Allocation{}, false
	}
	got, err := c.alloc.Allocate(svc)
	if err != nil {
		reason := reasonOf(err)
		c.metrics.refused(reason)
		if c.noteRefusal(key, reason+": "+err.Error()) {
			klog.InfoS("Refused to allocate", "service", klog.KObj(svc), "reason", reason, "err", err)
			c.recorder.Event(svc, v1.EventTypeWarning, reason, err.Error())
		}
		if slices.Contains(retryable, reason) {
			return nil, api.NewRetryError(err.Error(), c.opts.RetryAfter)
		}
		return nil, err
	}
	c.noteRefusal(key, "")
	if !had || !slices.Equal(before.IPs, got.IPs) {
		c.metrics.allocated()
		klog.InfoS("Allocated", "service", klog.KObj(svc), "ips", got.IPs, "pool", allocator.PoolAnnotation(got))
		c.recorder.Eventf(svc, v1.EventTypeNormal, ReasonIPAllocated, "Assigned IP %s from pool %s", joinAddrs(got.IPs), poolsText(got))
		c.status.markPools(c.alloc.PoolsCovering(append(before.IPs, got.IPs...)...)...)
		if len(before.IPs) > 0 {
			c.retryRefused() // a reallocation may have freed an address
		}
	}
	c.noteOrphans(svc, got)
	return statusFor(got.IPs), nil
}

// noteRefusal records the latest refusal of key ("" clears it) and reports whether
// it differs from the previous one, so that a Service retried every few seconds
// gets one Event per distinct refusal, not one per attempt.
func (c *Cloud) noteRefusal(key, what string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	prev, had := c.refused[key]
	if what == "" {
		delete(c.refused, key)
		return false
	}
	c.refused[key] = what
	return !had || prev != what
}

// noteOrphans reports (once per distinct set) the addresses of svc that no pool
// covers any more.
func (c *Cloud) noteOrphans(svc *v1.Service, a allocator.Allocation) {
	key, what := allocator.ServiceKey(svc), joinAddrs(a.Orphaned)
	c.mu.Lock()
	prev := c.orphans[key]
	if what == "" {
		delete(c.orphans, key)
	} else {
		c.orphans[key] = what
	}
	c.mu.Unlock()
	if what != "" && what != prev {
		c.orphanEvent(svc, a)
	}
}

func (c *Cloud) orphanEvent(svc *v1.Service, a allocator.Allocation) {
	klog.InfoS("Service keeps an address no pool covers", "service", klog.KObj(svc), "ips", a.Orphaned)
	c.recorder.Eventf(svc, v1.EventTypeWarning, ReasonAddressNotInPool,
		"Keeping %s although no IPPool covers it any more; the address is not re-assigned. Restore the pool range or request a new address.", joinAddrs(a.Orphaned))
}

// UpdateLoadBalancer is a no-op: node membership is the speakers' business.
func (c *Cloud) UpdateLoadBalancer(context.Context, string, *v1.Service, []*v1.Node) error {
	return nil
}

// EnsureLoadBalancerDeleted releases the addresses this incarnation of svc holds
// (idempotent; a call for an old incarnation never frees a newer Service's
// addresses).
func (c *Cloud) EnsureLoadBalancerDeleted(ctx context.Context, _ string, svc *v1.Service) error {
	if err := c.waitReady(ctx); err != nil {
		return err
	}
	c.release(allocator.ServiceKey(svc), svc.UID, svc, "no longer a LoadBalancer of this provider")
	return nil
}

// release is the one release path: it frees what uid holds under key (any holder
// when uid is empty) and records the Event on ref, the metric and the status of
// every pool whose counts change. It reports whether anything was freed.
func (c *Cloud) release(key string, uid types.UID, ref runtime.Object, why string) bool {
	before, had := c.alloc.Lookup(key)
	c.noteRefusal(key, "")
	c.mu.Lock()
	delete(c.orphans, key)
	c.mu.Unlock()
	if !had || !c.alloc.Release(key, uid) {
		return false
	}
	c.metrics.released()
	klog.InfoS("Released", "service", key, "uid", before.UID, "ips", before.IPs, "pool", allocator.PoolAnnotation(before), "why", why)
	c.recorder.Eventf(ref, v1.EventTypeNormal, ReasonIPReleased, "Released IP %s to pool %s (%s)", joinAddrs(before.IPs), poolsText(before), why)
	c.status.markPools(c.alloc.PoolsCovering(before.IPs...)...)
	c.retryRefused()
	return true
}

// releaseDeleted releases what a Service that no longer exists held.
func (c *Cloud) releaseDeleted(key string) {
	before, had := c.alloc.Lookup(key)
	if !had {
		return
	}
	ns, name, _ := strings.Cut(key, "/")
	c.release(key, before.UID, serviceRef(ns, name, before.UID), "deleted")
}

func serviceRef(ns, name string, uid types.UID) *v1.ObjectReference {
	return &v1.ObjectReference{Kind: "Service", APIVersion: "v1", Namespace: ns, Name: name, UID: uid}
}

func statusFor(ips []netip.Addr) *v1.LoadBalancerStatus {
	st := &v1.LoadBalancerStatus{}
	for _, ip := range ips {
		mode := v1.LoadBalancerIPModeVIP
		st.Ingress = append(st.Ingress, v1.LoadBalancerIngress{IP: ip.String(), IPMode: &mode})
	}
	return st
}

func reasonOf(err error) string {
	var ae *allocator.Error
	if errors.As(err, &ae) {
		return ae.Reason
	}
	return "AllocationFailed"
}

// poolsText names the pool(s) of an allocation for Events ("lan", "v4 and v6").
func poolsText(a allocator.Allocation) string {
	var names []string
	for _, p := range a.Pools {
		if p == "" {
			p = "(none)"
		}
		if !slices.Contains(names, p) {
			names = append(names, p)
		}
	}
	return strings.Join(names, " and ")
}

func joinAddrs(ips []netip.Addr) string {
	parts := make([]string, len(ips))
	for i, ip := range ips {
		parts[i] = ip.String()
	}
	return strings.Join(parts, ",")
}
