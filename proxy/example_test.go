package proxy_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"time"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/ironlb/ironlb/proxy"
	"github.com/ironlb/ironlb/proxy/iptables"
)

// A Proxier run against fake informers and the in-memory iptables; the
// tracer tells where a pod's connection to the ClusterIP goes.
func Example() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	port, proto, ready := int32(8080), v1.ProtocolTCP, true
	name := "http"
	client := fake.NewClientset(
		&v1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "nginx"},
			Spec: v1.ServiceSpec{Type: v1.ServiceTypeClusterIP, ClusterIP: "198.19.0.10", ClusterIPs: []string{"198.19.0.10"},
				Ports: []v1.ServicePort{{Name: "http", Port: 80, Protocol: v1.ProtocolTCP}}},
		},
		&discovery.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Namespace: "web", Name: "nginx-1", Labels: map[string]string{discovery.LabelServiceName: "nginx"}},
			AddressType: discovery.AddressTypeIPv4,
			Ports:       []discovery.EndpointPort{{Name: &name, Port: &port, Protocol: &proto}},
			Endpoints: []discovery.Endpoint{
				{Addresses: []string{"198.18.1.10"}, Conditions: discovery.EndpointConditions{Ready: &ready}},
				{Addresses: []string{"198.18.2.10"}, Conditions: discovery.EndpointConditions{Ready: &ready}},
			},
		})

	model := iptables.NewModel(iptables.IPv4)
	p, err := proxy.New(proxy.Config{
		NodeName:     "node1",
		IPTables:     []iptables.Interface{model},
		ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("198.18.0.0/16")},
		HealthCheckListen: func(context.Context, string, string) (net.Listener, error) {
			return nil, fmt.Errorf("no health checks in this example")
		},
	})
	if err != nil {
		panic(err)
	}
	f := informers.NewSharedInformerFactory(client, 0)
	inf := proxy.Informers{Services: f.Core().V1().Services(), EndpointSlices: f.Discovery().V1().EndpointSlices(), Nodes: f.Core().V1().Nodes()}
	inf.Services.Informer()
	inf.EndpointSlices.Informer()
	inf.Nodes.Informer()
	f.Start(ctx.Done())
	go func() { _ = p.Run(ctx, inf) }()

	tracer := iptables.Tracer{Model: model, LocalAddrs: []netip.Addr{netip.MustParseAddr("192.0.2.11")}}
	pkt := iptables.Packet{Src: netip.MustParseAddr("198.18.1.5"), Dst: netip.MustParseAddr("198.19.0.10"),
		Protocol: "tcp", DstPort: 80, InInterface: "veth0"}
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		outs, err := tracer.Trace(pkt)
		if err != nil || len(outs) < 2 {
			continue
		}
		var to []string
		for _, o := range outs {
			to = append(to, fmt.Sprintf("%s p=%.2f masquerade=%v", o.Dst, o.Probability, o.Masquerade))
		}
		sort.Strings(to)
		for _, s := range to {
			fmt.Println(s)
		}
		break
	}
	// Output:
	// 198.18.1.10:8080 p=0.50 masquerade=false
	// 198.18.2.10:8080 p=0.50 masquerade=false
}
