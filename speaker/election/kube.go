package election

import (
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/ironlb/ironlb/api/v1alpha1"
)

// NodeFromObject returns the election's view of a Kubernetes Node.
func NodeFromObject(n *corev1.Node) Node {
	ready := false
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			ready = c.Status == corev1.ConditionTrue
		}
	}
	return Node{Labels: n.Labels, Ready: ready}
}

// PoolFromSpec returns the election's view of an IPPool's spec.advertise. A
// missing or empty nodeSelector selects every node (unlike
// metav1.LabelSelectorAsSelector, which selects none for nil).
func PoolFromSpec(adv *v1alpha1.AdvertiseSpec) (Pool, error) {
	var p Pool
	if adv == nil {
		return p, nil
	}
	var err error
	if adv.L2 != nil {
		if p.L2, err = selector(adv.L2.NodeSelector); err != nil {
			return Pool{}, fmt.Errorf("advertise.l2.nodeSelector: %w", err)
		}
	}
	if adv.BGP != nil {
		if p.BGP, err = selector(adv.BGP.NodeSelector); err != nil {
			return Pool{}, fmt.Errorf("advertise.bgp.nodeSelector: %w", err)
		}
	}
	return p, nil
}

func selector(s *metav1.LabelSelector) (labels.Selector, error) {
	if s == nil {
		return labels.Everything(), nil
	}
	return metav1.LabelSelectorAsSelector(s)
}

// ReadyEndpointNodes returns the sorted, unique node names of the ready
// endpoints in a Service's EndpointSlices (Service.EndpointNodes). An endpoint
// is ready when its ready condition is true or unset (the API's rule); one
// without a node name is listed as "".
func ReadyEndpointNodes(eps []*discoveryv1.EndpointSlice) []string {
	var out []string
	for _, s := range eps {
		for _, ep := range s.Endpoints {
			if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
				continue
			}
			n := ""
			if ep.NodeName != nil {
				n = *ep.NodeName
			}
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
