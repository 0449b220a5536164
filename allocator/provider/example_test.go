package provider_test

import (
	"context"
	"fmt"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/ironlb/ironlb/allocator/provider"
	"github.com/ironlb/ironlb/api/v1alpha1"
)

// Driving the ironlb cloud provider from a unit test with client-go fake clientsets:
// the IPPool lives in a fake dynamic client, Services in a fake clientset.
func ExampleCloud_EnsureLoadBalancer() {
	pool := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "ironlb.io/v1alpha1", "kind": "IPPool",
		"metadata": map[string]any{"name": "lan"},
		"spec":     map[string]any{"addresses": []any{"192.0.2.200-192.0.2.250"}},
	}}
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{v1alpha1.IPPoolsResource: "IPPoolList"}, pool)
	client := fake.NewSimpleClientset()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cloud := provider.New(provider.Options{})
	if err := cloud.Start(ctx, client, dyn, informers.NewSharedInformerFactory(client, 0)); err != nil {
		panic(err)
	}
	<-cloud.Ready() // the allocator has been rebuilt from the (fake) cluster

	svc := &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "nginx-service"},
		Spec: v1.ServiceSpec{
			Type:  v1.ServiceTypeLoadBalancer,
			Ports: []v1.ServicePort{{Port: 8000, Protocol: v1.ProtocolTCP}},
		},
	}
	st, err := cloud.EnsureLoadBalancer(ctx, "cluster", svc, nil)
	if err != nil {
		panic(err)
	}
	fmt.Println(st.Ingress[0].IP, *st.Ingress[0].IPMode)

	if err := cloud.EnsureLoadBalancerDeleted(ctx, "cluster", svc); err != nil {
		panic(err)
	}
	_, exists, _ := cloud.GetLoadBalancer(ctx, "cluster", svc)
	fmt.Println("exists after delete:", exists)
	// Output:
	// 192.0.2.200 VIP
	// exists after delete: false
}
