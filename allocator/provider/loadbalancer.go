package provider

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
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
	if !ok {
		return nil, false, nil
	}
	return statusFor(a.IPs), true, nil
}

// GetLoadBalancerName returns the conventional name derived from the Service UID.
func (c *Cloud) GetLoadBalancerName(_ context.Context, _ string, svc *v1.Service) string {
	return cloudprovider.DefaultLoadBalancerName(svc)
}

// EnsureLoadBalancer allocates (or confirms) the addresses of svc and returns them as
// ingress entries with ipMode VIP. A refusal is reported as a Warning Event on the
// Service whose reason is the allocator's (PoolExhausted, IPInUse, ...); refusals that a
// pool edit or another Service's deletion can cure are retried at a fixed interval.
func (c *Cloud) EnsureLoadBalancer(ctx context.Context, _ string, svc *v1.Service, _ []*v1.Node) (*v1.LoadBalancerStatus, error) {
	if err := c.waitReady(ctx); err != nil {
		return nil, err
	}
	key := allocator.ServiceKey(svc)
	before, had := c.alloc.Lookup(key)
	got, err := c.alloc.Allocate(svc)
	if err != nil {
		reason := reasonOf(err)
		c.metrics.refused(reason)
		klog.InfoS("Refused to allocate", "service", klog.KObj(svc), "reason", reason, "err", err)
		c.recorder.Event(svc, v1.EventTypeWarning, reason, err.Error())
		switch reason {
		case allocator.ReasonPoolExhausted, allocator.ReasonNoPools, allocator.ReasonPoolNotFound,
			allocator.ReasonIPInUse, allocator.ReasonIPOutsidePools, allocator.ReasonPoolNotAllowed:
			return nil, api.NewRetryError(err.Error(), c.opts.RetryAfter)
		}
		return nil, err
	}
	if !had || !slices.Equal(before.IPs, got.IPs) {
		c.metrics.allocated()
		klog.InfoS("Allocated", "service", klog.KObj(svc), "ips", got.IPs, "pool", got.Pool)
		c.recorder.Eventf(svc, v1.EventTypeNormal, ReasonIPAllocated, "Assigned IP %s from pool %s", joinAddrs(got.IPs), got.Pool)
		c.status.markPools(before.Pool, got.Pool)
	}
	if len(got.Orphaned) > 0 {
		c.orphanEvent(svc, got)
	}
	return statusFor(got.IPs), nil
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

// EnsureLoadBalancerDeleted releases the addresses of svc (idempotent).
func (c *Cloud) EnsureLoadBalancerDeleted(ctx context.Context, _ string, svc *v1.Service) error {
	if err := c.waitReady(ctx); err != nil {
		return err
	}
	c.release(svc, "no longer a LoadBalancer of this provider")
	return nil
}

func (c *Cloud) release(svc *v1.Service, why string) {
	key := allocator.ServiceKey(svc)
	before, had := c.alloc.Lookup(key)
	if !had || !c.alloc.Release(key) {
		return
	}
	c.metrics.released()
	klog.InfoS("Released", "service", klog.KObj(svc), "ips", before.IPs, "pool", before.Pool, "why", why)
	if c.recorder != nil {
		c.recorder.Eventf(svc, v1.EventTypeNormal, ReasonIPReleased, "Released IP %s to pool %s (%s)", joinAddrs(before.IPs), before.Pool, why)
	}
	if c.status != nil {
		c.status.markPools(before.Pool)
	}
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

func joinAddrs(ips []netip.Addr) string {
	s := ""
	for i, ip := range ips {
		if i > 0 {
			s += ","
		}
		s += ip.String()
	}
	return s
}
