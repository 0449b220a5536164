package controller

import (
	"net/netip"
	"slices"
	"testing"

	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/ironlb/ironlb/ingress"
)

func ingressClass(name, controller string, isDefault bool) *networkingv1.IngressClass {
	ic := &networkingv1.IngressClass{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: networkingv1.IngressClassSpec{Controller: controller}}
	if isDefault {
		ic.Annotations = map[string]string{DefaultClassAnnotation: "true"}
	}
	return ic
}

func TestClassSelection(t *testing.T) {
	withClass := func(name string) *networkingv1.Ingress {
		return &networkingv1.Ingress{Spec: networkingv1.IngressSpec{IngressClassName: ptr.To(name)}}
	}
	legacy := func(v string) *networkingv1.Ingress {
		return &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{LegacyClassAnnotation: v}}}
	}
	none := &networkingv1.Ingress{}
	ours, oursDefault := ingressClass("ironlb", ControllerName, false), ingressClass("ironlb", ControllerName, true)
	foreign := ingressClass("ironlb", "k8s.io/ingress-nginx", true) // our name, someone else's controller
	nginx := ingressClass("nginx", "k8s.io/ingress-nginx", true)
	for _, tc := range []struct {
		name    string
		classes []*networkingv1.IngressClass
		ing     *networkingv1.Ingress
		want    bool
	}{
		{"ingressClassName ours", []*networkingv1.IngressClass{ours}, withClass("ironlb"), true},
		{"ingressClassName other", []*networkingv1.IngressClass{ours, nginx}, withClass("nginx"), false},
		{"ingressClassName ours but no IngressClass object", nil, withClass("ironlb"), false},
		{"ingressClassName ours but other controller", []*networkingv1.IngressClass{foreign}, withClass("ironlb"), false},
		{"legacy annotation ours", nil, legacy("ironlb"), true},
		{"legacy annotation other, even with our default class", []*networkingv1.IngressClass{oursDefault}, legacy("nginx"), false},
		{"no class, ours is default", []*networkingv1.IngressClass{oursDefault}, none, true},
		{"no class, ours not default", []*networkingv1.IngressClass{ours, nginx}, none, false},
		{"no class, default is someone else's", []*networkingv1.IngressClass{foreign}, none, false},
	} {
		if got := classOf("ironlb", tc.classes).handles(tc.ing); got != tc.want {
			t.Errorf("%s: handles = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestTranslate(t *testing.T) {
	ing := &networkingv1.Ingress{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "i", Annotations: map[string]string{"a": "b"}},
		Spec: networkingv1.IngressSpec{
			DefaultBackend: &networkingv1.IngressBackend{Resource: &v1.TypedLocalObjectReference{APIGroup: ptr.To("k8s.example.com"), Kind: "StorageBucket", Name: "static"}},
			TLS:            []networkingv1.IngressTLS{{Hosts: []string{"a.example"}, SecretName: "s"}},
			Rules: []networkingv1.IngressRule{
				{Host: "a.example", IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{Paths: []networkingv1.HTTPIngressPath{
					{Path: "/x", PathType: ptr.To(networkingv1.PathTypeExact), Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: "web", Port: networkingv1.ServiceBackendPort{Name: "http"}}}},
					{Path: "/y", Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: "web", Port: networkingv1.ServiceBackendPort{Number: 8080}}}},
				}}}},
				{Host: "hostonly.example"},
			},
		},
	}
	got := translate(ing)
	if got.DefaultBackend == nil || got.DefaultBackend.Resource != "k8s.example.com/StorageBucket/static" {
		t.Errorf("default backend %+v", got.DefaultBackend)
	}
	p := got.Rules[0].Paths
	if p[0].Type != ingress.PathExact || p[0].Backend.Port.Name != "http" || p[1].Type != ingress.PathImplementationSpecific || p[1].Backend.Port.Number != 8080 {
		t.Errorf("paths %+v", p)
	}
	if len(got.Rules) != 2 || got.Rules[1].Host != "hostonly.example" || len(got.Rules[1].Paths) != 0 {
		t.Errorf("rules %+v", got.Rules)
	}
	if len(got.TLS) != 1 || got.TLS[0].SecretName != "s" || got.Annotations["a"] != "b" {
		t.Errorf("tls %+v annotations %v", got.TLS, got.Annotations)
	}
	if b := backends(&got); len(b) != 2 {
		t.Errorf("backends %+v, want the two Service paths (the resource is not a Service)", b)
	}
}

func slice(name, portName string, port int32, family discoveryv1.AddressType, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "ns", Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: family,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To(portName), Port: ptr.To(port)}},
		Endpoints:   eps,
	}
}

func ep(ready *bool, addrs ...string) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{Addresses: addrs, Conditions: discoveryv1.EndpointConditions{Ready: ready}}
}

func TestResolveEndpoints(t *testing.T) {
	svc := &v1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web"}, Spec: v1.ServiceSpec{Ports: []v1.ServicePort{
		{Name: "http", Port: 80}, {Name: "metrics", Port: 9090},
	}}}
	slices := []*discoveryv1.EndpointSlice{
		slice("a", "http", 8080, discoveryv1.AddressTypeIPv4,
			ep(nil, "198.18.1.2"), ep(ptr.To(true), "198.18.1.1"), ep(ptr.To(false), "198.18.1.9")),
		// During a rollout the targetPort differs per slice; an endpoint may appear twice.
		slice("b", "http", 8081, discoveryv1.AddressTypeIPv6, ep(ptr.To(true), "2001:db8::1")),
		slice("c", "http", 8080, discoveryv1.AddressTypeIPv4, ep(ptr.To(true), "198.18.1.1")),
		slice("d", "metrics", 9100, discoveryv1.AddressTypeIPv4, ep(ptr.To(true), "198.18.1.1")),
		slice("e", "http", 8080, discoveryv1.AddressTypeFQDN, ep(ptr.To(true), "example.com")),
	}
	want := []netip.AddrPort{netip.MustParseAddrPort("198.18.1.1:8080"), netip.MustParseAddrPort("198.18.1.2:8080"),
		netip.MustParseAddrPort("[2001:db8::1]:8081")}
	for _, port := range []ingress.ServicePort{{Number: 80}, {Name: "http"}} {
		got, err := resolveEndpoints(svc, port, slices)
		if err != nil || !slicesEqual(got, want) {
			t.Errorf("port %v: %v %v, want %v", port, got, err, want)
		}
	}
	if got, err := resolveEndpoints(svc, ingress.ServicePort{Name: "metrics"}, slices); err != nil || len(got) != 1 || got[0].Port() != 9100 {
		t.Errorf("metrics port: %v %v", got, err)
	}
	if _, err := resolveEndpoints(svc, ingress.ServicePort{Number: 443}, slices); err == nil {
		t.Error("a port the Service does not have resolved")
	}
	ext := svc.DeepCopy()
	ext.Spec.Type = v1.ServiceTypeExternalName
	if _, err := resolveEndpoints(ext, ingress.ServicePort{Number: 80}, slices); err == nil {
		t.Error("an ExternalName Service resolved")
	}
	// An unnamed single port matches slices whose port has no name.
	unnamed := &v1.Service{ObjectMeta: svc.ObjectMeta, Spec: v1.ServiceSpec{Ports: []v1.ServicePort{{Port: 80}}}}
	s := slice("u", "", 3000, discoveryv1.AddressTypeIPv4, ep(nil, "198.18.1.5"))
	s.Ports[0].Name = nil
	if got, _ := resolveEndpoints(unnamed, ingress.ServicePort{Number: 80}, []*discoveryv1.EndpointSlice{s}); len(got) != 1 || got[0] != netip.MustParseAddrPort("198.18.1.5:3000") {
		t.Errorf("unnamed port: %v", got)
	}
}

func slicesEqual(a, b []netip.AddrPort) bool { return slices.Equal(a, b) }
