package allocator

import (
	v1 "k8s.io/api/core/v1"
)

// Address families: a Service gets addresses only of the families in its
// spec.ipFamilies, because those are the families kube-proxy (and ironlb's
// proxy) forward for it.

// policy is the family policy of a Service.
type policy int

const (
	singleStack policy = iota
	preferDualStack
	requireDualStack
)

func (p policy) String() string {
	switch p {
	case preferDualStack:
		return string(v1.IPFamilyPolicyPreferDualStack)
	case requireDualStack:
		return string(v1.IPFamilyPolicyRequireDualStack)
	}
	return string(v1.IPFamilyPolicySingleStack)
}

// familyNeed is what families a Service may and must have.
type familyNeed struct {
	policy policy
	// order[:n] are the families the Service has, primary first; addresses of
	// order[n:] are never given to it.
	order [2]family
	n     int
}

// allows reports whether the Service has family f.
func (fn familyNeed) allows(f family) bool {
	for _, g := range fn.order[:fn.n] {
		if g == f {
			return true
		}
	}
	return false
}

// names is the Service's families for messages ("IPv4", "IPv4 and IPv6").
func (fn familyNeed) names() string {
	if fn.n == 1 {
		return fn.order[0].String()
	}
	return fn.order[0].String() + " and " + fn.order[1].String()
}

// familiesFor derives the families of svc from spec.ipFamilies, which the API
// server always fills in for a LoadBalancer Service: a PreferDualStack Service in
// a single-stack cluster has one family there and gets one address. Only when
// spec.ipFamilies is empty (an object that never went through an API server) is
// the policy used alone: IPv4 for SingleStack, both families for the dual-stack
// policies. Requested addresses must be of the Service's families and their
// count must fit the policy.
func familiesFor(svc *v1.Service, req Request, key string) (familyNeed, *Error) {
	fn := familyNeed{order: [2]family{fam4, fam6}}
	if p := svc.Spec.IPFamilyPolicy; p != nil {
		switch *p {
		case v1.IPFamilyPolicyPreferDualStack:
			fn.policy = preferDualStack
		case v1.IPFamilyPolicyRequireDualStack:
			fn.policy = requireDualStack
		}
	}
	fams := svc.Spec.IPFamilies
	switch {
	case len(fams) > 0 && fams[0] == v1.IPv6Protocol:
		fn.order = [2]family{fam6, fam4}
	}
	switch {
	case fn.policy == singleStack:
		fn.n = 1
	case fn.policy == requireDualStack:
		fn.n = 2
	case len(fams) == 0:
		fn.n = 2
	default:
		fn.n = 1
		if len(fams) > 1 && fams[1] != fams[0] {
			fn.n = 2
		}
	}
	switch {
	case len(req.IPs) == 2 && fn.policy == singleStack:
		return fn, newError(ReasonInvalidRequest, "service %s: requests two addresses (%s) but its ipFamilyPolicy is SingleStack", key, joinAddrs(req.IPs))
	case len(req.IPs) == 1 && fn.policy == requireDualStack:
		return fn, newError(ReasonInvalidRequest, "service %s: requests only %s but its ipFamilyPolicy is RequireDualStack", key, req.IPs[0])
	}
	for _, ip := range req.IPs {
		if f := familyOf(ip); !fn.allows(f) {
			return fn, newError(ReasonIPFamilyMismatch, "service %s: requested IP %s is %s but the Service has only %s (spec.ipFamilies); traffic to it would not be forwarded", key, ip, f, fn.names())
		}
	}
	return fn, nil
}
