package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/ironlb/ironlb/test/framework"
	"github.com/ironlb/ironlb/test/lab"
)

// ingressLab is what the Ingress shapes run against: ironlb-ingress in a pod
// namespace on node1 behind its LoadBalancer Service, whose VIP is announced
// both by ARP (for lanclient) and by BGP to the router (for client).
type ingressLab struct {
	vip     netip.Addr
	proxy   *framework.Ingress
	ns      string
	caFile  string
	clients []string // lab hosts every request is sent from
}

// TestIngress runs the Kubernetes documentation's Ingress shapes through a real
// ironlb-ingress: the controller (as ServiceAccount ironlb-ingress with the RBAC
// of deploy/ingress) watches the lab's API server, proxies to the pod servers'
// endpoints, and is reached through the VIP of its externalTrafficPolicy: Local
// LoadBalancer Service, which ironlb-controller allocates and the speakers
// announce only from node1 (where its endpoint is), beside a real kube-proxy.
// Every request goes out from client (behind the router: the BGP route) and from
// lanclient (the ARP answer).
func TestIngress(t *testing.T) {
	il := ingressUp(t)
	for _, tc := range []struct {
		name string
		run  func(*testing.T, *ingressLab)
	}{
		{"single Service and default backend", testIngressSingle},
		{"fan-out", testIngressFanout},
		{"name virtual hosts", testIngressVhosts},
		{"TLS by SNI and HTTP redirect", testIngressTLS},
	} {
		if !t.Run(tc.name, func(t *testing.T) { tc.run(t, il) }) {
			return
		}
	}
}

func ingressUp(t *testing.T) *ingressLab {
	t.Helper()
	ctx := t.Context()
	speakersUp(t)
	var nodes []netip.Addr
	for i := 1; i <= env.Lab.Nodes(); i++ {
		nodes = append(nodes, env.Lab.NodeIP(i))
	}
	if err := env.Lab.StartFRR(ctx, lab.DefaultFRRConfig(env.Lab, 0, nodes...)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Lab.StopFRR() })
	if _, err := createYAML(t, bgppeers, `{apiVersion: ironlb.io/v1alpha1, kind: BGPPeer, metadata: {name: ing-router}, spec: {peerAddress: 192.0.2.1, peerASN: 64512, myASN: 64600, holdTime: 9s, keepaliveTime: 3s}}`); err != nil {
		t.Fatal(err)
	}
	// One address, two paths: ARP on the LAN and a /32 BGP route at the router
	// (more specific than its connected LAN), so client's requests take BGP.
	mustCreatePool(t, `{apiVersion: ironlb.io/v1alpha1, kind: IPPool, metadata: {name: ing}, spec: {addresses: ["192.0.2.235-192.0.2.239"], allocation: {namespaces: [ironlb-system]}, advertise: {l2: {}, bgp: {}}}}`)
	if err := env.InstallIngress(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { deleteService(t, framework.IngressNamespace, framework.IngressService) })

	il := &ingressLab{ns: namespace(t, "ing"), clients: []string{lab.HostClient, lab.HostLANClient}}
	for _, s := range []struct {
		name string
		n    int
	}{{"s1", 2}, {"s2", 2}, {"def", 1}} {
		backendService(t, il.ns, s.name)
		if _, err := env.StartBackendsOn(ctx, il.ns, s.name, s.name, s.n, 8080, 2, 3); err != nil {
			t.Fatal(err)
		}
	}
	proxy, err := env.StartIngress(ctx, 1, "ironlb-ingress-e2e", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proxy.Stop() })
	il.proxy = proxy
	if err := env.PublishPortEndpoints(ctx, framework.IngressNamespace, framework.IngressService,
		[]lab.Pod{proxy.Pod}, map[string]int32{"http": 80, "https": 443}); err != nil {
		t.Fatal(err)
	}
	vip, _ := waitIngress(t, framework.IngressNamespace, framework.IngressService, 10*time.Second)
	il.vip = netip.MustParseAddr(vip)
	waitL2Owner(t, vip, 15*time.Second, env.Lab.NodeName(1))
	waitRoute(t, vip+"/32", 30*time.Second, env.Lab.NodeIP(1).String())

	ca, err := framework.NewTLSAuthority("ironlb e2e CA")
	if err != nil {
		t.Fatal(err)
	}
	il.caFile = filepath.Join(env.Lab.Dir(), "ingress-ca.pem")
	if err := os.WriteFile(il.caFile, ca.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	for host, secret := range map[string]string{"foo.bar.com": "foo-tls", "bar.foo.com": "bar-tls"} {
		c, k, err := ca.Issue(host)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := env.Cluster.Client.CoreV1().Secrets(il.ns).Create(ctx, framework.TLSSecret(il.ns, secret, c, k), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	createIngress(t, il, "single", networkingv1.IngressSpec{DefaultBackend: backend("def", 80)})
	return il
}

// backendService creates ClusterIP Service ns/name with port "http" 80 -> 8080,
// the pod servers' port.
func backendService(t *testing.T, ns, name string) {
	t.Helper()
	_, err := env.Cluster.Client.CoreV1().Services(ns).Create(t.Context(), &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": name},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { deleteService(t, ns, name) })
}

// A single Service Ingress: only spec.defaultBackend, so every host and path
// goes to def. (ingressUp creates it: it stays as the default backend of the
// other shapes.)
func testIngressSingle(t *testing.T, il *ingressLab) {
	il.expect(t, "http://anything.example/", "def")
	il.expect(t, "http://foo.bar.com/any/path?x=1", "def")
	il.waitStatus(t, "single")
}

// The fan-out: foo.bar.com /foo -> s1, /bar -> s2; a path that is not an
// element-wise prefix (/foobar) and another host fall to the default backend of
// "single".
func testIngressFanout(t *testing.T, il *ingressLab) {
	createIngress(t, il, "fanout", networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{
		rule("foo.bar.com", path("/foo", "s1"), path("/bar", "s2")),
	}})
	il.expectRoutes(t, []string{
		"http://foo.bar.com/foo", "s1", // first: the Ingress is in the table from here on
		"http://foo.bar.com/foo/deeper", "s1",
		"http://foo.bar.com/bar", "s2",
		"http://foo.bar.com/foobar", "def",
		"http://foo.bar.com/", "def",
		"http://bar.foo.com/foo", "def",
	})
	il.waitStatus(t, "fanout")
	deleteIngress(t, il, "fanout")
	il.expect(t, "http://foo.bar.com/foo", "def")
}

// Name-based virtual hosts on one address: foo.bar.com -> s1, bar.foo.com -> s2,
// any other host -> the default backend.
func testIngressVhosts(t *testing.T, il *ingressLab) {
	createIngress(t, il, "vhosts", networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{
		rule("foo.bar.com", path("/", "s1")),
		rule("bar.foo.com", path("/", "s2")),
	}})
	il.expectRoutes(t, []string{
		"http://foo.bar.com/bar", "s1", // first: the Ingress is in the table from here on
		"http://foo.bar.com/", "s1",
		"http://bar.foo.com/foo", "s2",
		"http://FOO.bar.com/x", "s1",
		"http://baz.bar.com/", "def",
	})
	il.waitStatus(t, "vhosts")
	deleteIngress(t, il, "vhosts")
}

// TLS for two hosts on 443: each gets its own certificate by SNI (the handshake
// and curl's verification against the test CA prove it), over HTTP/2; a server
// name of no host gets the default certificate; plain HTTP to a TLS host is
// redirected (308) to https with path and query kept.
func testIngressTLS(t *testing.T, il *ingressLab) {
	createIngress(t, il, "tls", networkingv1.IngressSpec{
		TLS: []networkingv1.IngressTLS{
			{Hosts: []string{"foo.bar.com"}, SecretName: "foo-tls"},
			{Hosts: []string{"bar.foo.com"}, SecretName: "bar-tls"},
		},
		Rules: []networkingv1.IngressRule{
			rule("foo.bar.com", path("/", "s1")),
			rule("bar.foo.com", path("/", "s2")),
		},
	})
	il.expectWith(t, "https://foo.bar.com/secure", "s1", framework.CurlOptions{CACert: il.caFile, HTTP2: true}, "2")
	il.expectWith(t, "https://bar.foo.com/secure", "s2", framework.CurlOptions{CACert: il.caFile, HTTP2: true}, "2")
	il.expectWith(t, "https://bar.foo.com/", "s2", framework.CurlOptions{CACert: il.caFile}, "1.1")
	for _, from := range il.clients {
		for _, host := range []string{"foo.bar.com", "bar.foo.com"} {
			cert, err := env.PeerCertificate(t.Context(), from, il.vip, 443, host)
			if err != nil {
				t.Fatal(err)
			}
			if cert.Subject.CommonName != host || !slices.Equal(cert.DNSNames, []string{host}) {
				t.Errorf("from %s, SNI %s: certificate %q %v, want the one of %s", from, host, cert.Subject.CommonName, cert.DNSNames, host)
			}
		}
		cert, err := env.PeerCertificate(t.Context(), from, il.vip, 443, "nomatch.example")
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains(cert.DNSNames, "foo.bar.com") || slices.Contains(cert.DNSNames, "bar.foo.com") || cert.Subject.CommonName == "foo.bar.com" || cert.Subject.CommonName == "bar.foo.com" {
			t.Errorf("from %s, SNI nomatch.example: got a host's certificate %q %v, want the default", from, cert.Subject.CommonName, cert.DNSNames)
		}
		r, err := env.Curl(t.Context(), from, il.vip, "http://foo.bar.com/a/b?q=1", framework.CurlOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if r.Code != 308 || r.Location != "https://foo.bar.com/a/b?q=1" {
			t.Errorf("from %s: http://foo.bar.com/a/b?q=1 answered %d Location %q, want 308 to https://foo.bar.com/a/b?q=1", from, r.Code, r.Location)
		}
	}
	// A host without TLS is not redirected.
	il.expect(t, "http://other.example/", "def")
	il.waitStatus(t, "tls")
}

// expect waits (up to 20s: the controller applies a new Ingress within a
// moment) until rawURL, from every client, is answered 200 by a pod of Service
// want, and checks that the pod saw the proxy's address (the request went
// straight to an endpoint, not through a ClusterIP).
func (il *ingressLab) expect(t *testing.T, rawURL, want string) {
	t.Helper()
	il.expectWith(t, rawURL, want, framework.CurlOptions{}, "")
}

// expectRoutes is expect for pairs of URL and Service, in order.
func (il *ingressLab) expectRoutes(t *testing.T, urlService []string) {
	t.Helper()
	for i := 0; i+1 < len(urlService); i += 2 {
		il.expect(t, urlService[i], urlService[i+1])
	}
}

func (il *ingressLab) expectWith(t *testing.T, rawURL, want string, o framework.CurlOptions, version string) {
	t.Helper()
	for _, from := range il.clients {
		var last string
		err := wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, 20*time.Second, true, func(ctx context.Context) (bool, error) {
			r, err := env.Curl(ctx, from, il.vip, rawURL, o)
			if err != nil {
				last = err.Error()
				return false, nil
			}
			last = fmt.Sprintf("%d HTTP/%s %q", r.Code, r.HTTPVersion, r.Body)
			f := strings.Fields(r.Body)
			if r.Code != 200 || len(f) < 2 || !strings.HasPrefix(f[0], want+"-") {
				return false, nil
			}
			if peer, err := netip.ParseAddrPort(f[1]); err != nil || peer.Addr() != il.proxy.Pod.IP {
				return false, fmt.Errorf("backend %s saw client %s, want the proxy %s", f[0], f[1], il.proxy.Pod.IP)
			}
			if version != "" && r.HTTPVersion != version {
				return false, fmt.Errorf("HTTP/%s, want HTTP/%s", r.HTTPVersion, version)
			}
			return true, nil
		})
		if err != nil {
			t.Fatalf("%s from %s via %s: want Service %s: %v; last answer: %s", rawURL, from, il.vip, want, err, last)
		}
	}
}

// waitStatus waits until Ingress name shows exactly the VIP in
// status.loadBalancer.ingress, as `kubectl get ingress` reads it.
func (il *ingressLab) waitStatus(t *testing.T, name string) {
	t.Helper()
	var got []networkingv1.IngressLoadBalancerIngress
	err := wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		ing, err := env.Cluster.Client.NetworkingV1().Ingresses(il.ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		got = ing.Status.LoadBalancer.Ingress
		return len(got) == 1 && got[0].IP == il.vip.String() && got[0].Hostname == "", nil
	})
	if err != nil {
		t.Fatalf("Ingress %s/%s status.loadBalancer.ingress = %+v, want [{IP: %s}]", il.ns, name, got, il.vip)
	}
}

func createIngress(t *testing.T, il *ingressLab, name string, spec networkingv1.IngressSpec) {
	t.Helper()
	class := "ironlb"
	spec.IngressClassName = &class
	_, err := env.Cluster.Client.NetworkingV1().Ingresses(il.ns).Create(t.Context(), &networkingv1.Ingress{
		ObjectMeta: metav1.ObjectMeta{Namespace: il.ns, Name: name}, Spec: spec,
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating Ingress %s: %v", name, err)
	}
	t.Cleanup(func() { deleteIngress(t, il, name) })
}

func deleteIngress(t *testing.T, il *ingressLab, name string) {
	err := env.Cluster.Client.NetworkingV1().Ingresses(il.ns).Delete(context.Background(), name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		t.Errorf("deleting Ingress %s: %v", name, err)
	}
}

func backend(svc string, port int32) *networkingv1.IngressBackend {
	return &networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: svc, Port: networkingv1.ServiceBackendPort{Number: port}}}
}

func rule(host string, paths ...networkingv1.HTTPIngressPath) networkingv1.IngressRule {
	return networkingv1.IngressRule{Host: host, IngressRuleValue: networkingv1.IngressRuleValue{
		HTTP: &networkingv1.HTTPIngressRuleValue{Paths: paths},
	}}
}

// path is a Prefix path to Service svc's port named http.
func path(p, svc string) networkingv1.HTTPIngressPath {
	pt := networkingv1.PathTypePrefix
	return networkingv1.HTTPIngressPath{Path: p, PathType: &pt, Backend: networkingv1.IngressBackend{
		Service: &networkingv1.IngressServiceBackend{Name: svc, Port: networkingv1.ServiceBackendPort{Name: "http"}},
	}}
}
