package allocator_test

import (
	"errors"
	"fmt"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ironlb/ironlb/allocator"
	"github.com/ironlb/ironlb/api/v1alpha1"
)

func ExampleAllocator_Allocate() {
	a := allocator.New()
	pool := &v1alpha1.IPPool{
		ObjectMeta: metav1.ObjectMeta{Name: "public"},
		Spec: v1alpha1.IPPoolSpec{
			Addresses: []v1alpha1.AddressRange{"192.0.2.10-192.0.2.20", "2001:db8::/64"},
		},
	}
	if err := a.SetPool(pool); err != nil {
		panic(err)
	}
	svc := &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"},
		Spec: v1.ServiceSpec{
			Type:  v1.ServiceTypeLoadBalancer,
			Ports: []v1.ServicePort{{Port: 443, Protocol: v1.ProtocolTCP}},
		},
	}
	alloc, err := a.Allocate(svc)
	if err != nil {
		panic(err)
	}
	fmt.Println(alloc.IPs, "from", alloc.Pool)

	st, _ := a.Stats("public")
	fmt.Println("IPv4 assigned", st.AssignedIPv4, "available", st.AvailableIPv4)
	// Output:
	// [192.0.2.10] from public
	// IPv4 assigned 1 available 10
}

func ExampleAllocator_Allocate_sharing() {
	a := allocator.New()
	pool := &v1alpha1.IPPool{
		ObjectMeta: metav1.ObjectMeta{Name: "public"},
		Spec:       v1alpha1.IPPoolSpec{Addresses: []v1alpha1.AddressRange{"192.0.2.0/28"}},
	}
	if err := a.SetPool(pool); err != nil {
		panic(err)
	}
	service := func(name string, port int32, annotations map[string]string) *v1.Service {
		return &v1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "dns", Name: name, Annotations: annotations},
			Spec: v1.ServiceSpec{
				Type:  v1.ServiceTypeLoadBalancer,
				Ports: []v1.ServicePort{{Port: port, Protocol: v1.ProtocolUDP}},
			},
		}
	}

	// An explicit address with a sharing key...
	udp, err := a.Allocate(service("dns-udp", 53, map[string]string{
		allocator.AnnotationLoadBalancerIPs: "192.0.2.5",
		allocator.AnnotationAllowSharedIP:   "dns",
	}))
	fmt.Println("dns-udp:", udp.IPs, err)

	// ...is shared by another Service with the same key and other ports
	// (MetalLB's annotation works too).
	tcp := service("dns-tcp", 53, map[string]string{"metallb.universe.tf/allow-shared-ip": "dns"})
	tcp.Spec.Ports[0].Protocol = v1.ProtocolTCP
	shared, err := a.Allocate(tcp)
	fmt.Println("dns-tcp:", shared.IPs, err)

	// A Service without the key cannot have it.
	_, err = a.Allocate(service("other", 80, map[string]string{allocator.AnnotationLoadBalancerIPs: "192.0.2.5"}))
	var aerr *allocator.Error
	if errors.As(err, &aerr) {
		fmt.Println("other:", aerr.Reason)
	}

	// The address is freed when its last holder releases it.
	fmt.Println(a.Release("dns/dns-udp", ""), a.Release("dns/dns-tcp", ""))
	st, _ := a.Stats("public")
	fmt.Println("assigned:", st.AssignedIPv4)
	// Output:
	// dns-udp: [192.0.2.5] <nil>
	// dns-tcp: [192.0.2.5] <nil>
	// other: IPInUse
	// true true
	// assigned: 0
}
