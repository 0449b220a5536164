package election

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/ironlb/ironlb/api/v1alpha1"
)

func TestNodeFromObject(t *testing.T) {
	for _, tt := range []struct {
		name  string
		conds []corev1.NodeCondition
		want  bool
	}{
		{"Ready True", []corev1.NodeCondition{{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse}, {Type: corev1.NodeReady, Status: corev1.ConditionTrue}}, true},
		{"Ready False", []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionFalse}}, false},
		{"Ready Unknown (kubelet silent)", []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionUnknown}}, false},
		{"no conditions yet", nil, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"zone": "a"}}, Status: corev1.NodeStatus{Conditions: tt.conds}}
			got := NodeFromObject(n)
			if got.Ready != tt.want || got.Labels["zone"] != "a" {
				t.Fatalf("got %+v, want Ready=%v with the labels", got, tt.want)
			}
		})
	}
}

func TestPoolFromSpec(t *testing.T) {
	edge := labels.Set{"role": "edge"}
	other := labels.Set{"role": "core"}
	tests := []struct {
		name            string
		adv             *v1alpha1.AdvertiseSpec
		l2Edge, l2Other *bool // nil: no L2 at all
		bgp             bool
	}{
		{"no advertise: allocated, not announced", nil, nil, nil, false},
		{"l2 without selector: every node", &v1alpha1.AdvertiseSpec{L2: &v1alpha1.L2Advertisement{}}, ptr(true), ptr(true), false},
		{"l2 with selector", &v1alpha1.AdvertiseSpec{L2: &v1alpha1.L2Advertisement{
			NodeSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"role": "edge"}}}}, ptr(true), ptr(false), false},
		{"bgp only", &v1alpha1.AdvertiseSpec{BGP: &v1alpha1.BGPAdvertisement{}}, nil, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := PoolFromSpec(tt.adv)
			if err != nil {
				t.Fatal(err)
			}
			if (p.L2 == nil) != (tt.l2Edge == nil) {
				t.Fatalf("L2 selector %v, want L2 announced: %v", p.L2, tt.l2Edge != nil)
			}
			if p.L2 != nil && (p.L2.Matches(edge) != *tt.l2Edge || p.L2.Matches(other) != *tt.l2Other) {
				t.Fatalf("L2 selector %v matches edge=%v core=%v", p.L2, p.L2.Matches(edge), p.L2.Matches(other))
			}
			if (p.BGP != nil) != tt.bgp {
				t.Fatalf("BGP selector %v, want BGP advertised: %v", p.BGP, tt.bgp)
			}
		})
	}
	_, err := PoolFromSpec(&v1alpha1.AdvertiseSpec{L2: &v1alpha1.L2Advertisement{NodeSelector: &metav1.LabelSelector{
		MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "role", Operator: "Sometimes"}}}}})
	if err == nil {
		t.Fatal("an invalid selector was accepted")
	}
}

func ptr[T any](v T) *T { return &v }

func TestReadyEndpointNodes(t *testing.T) {
	ep := func(node *string, ready *bool) discoveryv1.Endpoint {
		return discoveryv1.Endpoint{NodeName: node, Conditions: discoveryv1.EndpointConditions{Ready: ready}}
	}
	eps := []*discoveryv1.EndpointSlice{
		{Endpoints: []discoveryv1.Endpoint{ep(ptr("n2"), ptr(true)), ep(ptr("n1"), nil), ep(ptr("n3"), ptr(false))}},
		{Endpoints: []discoveryv1.Endpoint{ep(ptr("n2"), ptr(true)), ep(nil, ptr(true))}},
	}
	got := ReadyEndpointNodes(eps)
	if want := []string{"", "n1", "n2"}; !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q (ready or unset, deduplicated, unnamed as \"\")", got, want)
	}
}
