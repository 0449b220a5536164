package controller

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/ptr"

	"github.com/ironlb/ironlb/ingress"
)

// chanSink hands every published Table to the test.
type chanSink chan *ingress.Table

func (s chanSink) Update(t *ingress.Table) { s <- t }

// waitTable waits for a published Table that satisfies ok.
func waitTable(t *testing.T, s chanSink, what string, ok func(*ingress.Table) bool) *ingress.Table {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case tab := <-s:
			if ok(tab) {
				return tab
			}
		case <-timeout:
			t.Fatalf("no Table where %s", what)
		}
	}
}

func servedBy(tab *ingress.Table, host, path string) []netip.AddrPort {
	r := tab.Route(host, path)
	if r == nil {
		return nil
	}
	return r.Upstream.Endpoints
}

func tlsSecret(t *testing.T, name, host string) (*v1.Secret, *tls.Certificate) {
	t.Helper()
	c, err := ingress.SelfSigned(time.Hour, host)
	if err != nil {
		t.Fatal(err)
	}
	key, err := x509.MarshalECPrivateKey(c.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	return &v1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: name, UID: types.UID("uid-" + name), ResourceVersion: "1"},
		Type:       v1.SecretTypeTLS,
		Data: map[string][]byte{
			v1.TLSCertKey:       pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]}),
			v1.TLSPrivateKeyKey: pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: key}),
		},
	}, c
}

func ing(name string, created time.Time, class *string, ann map[string]string, host, svc string) *networkingv1.Ingress {
	return &networkingv1.Ingress{
		ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: name, UID: types.UID("uid-" + name),
			CreationTimestamp: metav1.NewTime(created), Annotations: ann},
		Spec: networkingv1.IngressSpec{IngressClassName: class, Rules: []networkingv1.IngressRule{{Host: host,
			IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{Paths: []networkingv1.HTTPIngressPath{{
				Path: "/", PathType: ptr.To(networkingv1.PathTypePrefix),
				Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: svc, Port: networkingv1.ServiceBackendPort{Number: 80}}},
			}}}}}}},
	}
}

// drain returns the Events recorded so far.
func drain(r *record.FakeRecorder) []string {
	var out []string
	for {
		select {
		case e := <-r.Events:
			out = append(out, e)
		default:
			return out
		}
	}
}

// TestController runs the controller against a fake clientset: class selection,
// endpoints from EndpointSlices, certificates from Secrets, Events (once), the status
// write from --publish-service, and reaction to changes of each watched kind.
func TestController(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	secret, cert := tlsSecret(t, "app-tls", "app.example")
	app := ing("app", t0, ptr.To("ironlb"), map[string]string{ingress.AnnotationPrefix + "configuration-snippet": "x"}, "app.example", "web")
	app.Spec.TLS = []networkingv1.IngressTLS{{Hosts: []string{"app.example"}, SecretName: "app-tls"}}
	objs := []runtime.Object{
		ingressClass("ironlb", ControllerName, true),
		ingressClass("nginx", "k8s.io/ingress-nginx", false),
		app,
		ing("copycat", t0.Add(time.Hour), ptr.To("ironlb"), nil, "app.example", "other"), // loses the merge
		ing("legacy", t0, nil, map[string]string{LegacyClassAnnotation: "ironlb"}, "legacy.example", "web"),
		ing("classless", t0, nil, nil, "classless.example", "web"),
		ing("foreign", t0, ptr.To("nginx"), nil, "foreign.example", "web"),
		ing("missing", t0, ptr.To("ironlb"), nil, "missing.example", "nosuchservice"),
		&v1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "web"},
			Spec: v1.ServiceSpec{Ports: []v1.ServicePort{{Name: "http", Port: 80}}}},
		&v1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "other"},
			Spec: v1.ServiceSpec{Ports: []v1.ServicePort{{Name: "http", Port: 80}}}},
		&discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Namespace: "web", Name: "web-abc", ResourceVersion: "1", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To(int32(8080))}},
			Endpoints:   []discoveryv1.Endpoint{ep(ptr.To(true), "198.18.1.1"), ep(ptr.To(true), "198.18.1.2"), ep(ptr.To(false), "198.18.1.3")},
		},
		secret,
		&v1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ironlb-system", Name: "ironlb-ingress", ResourceVersion: "1"},
			Spec:   v1.ServiceSpec{Type: v1.ServiceTypeLoadBalancer},
			Status: v1.ServiceStatus{LoadBalancer: v1.LoadBalancerStatus{Ingress: []v1.LoadBalancerIngress{{IP: "192.0.2.200"}}}}},
	}
	client := fake.NewClientset(objs...)
	rec := record.NewFakeRecorder(100)
	sink := make(chanSink, 100)
	c, err := New(Config{Client: client, Sink: sink, PublishService: "ironlb-system/ironlb-ingress", Recorder: rec})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})

	ready := []netip.AddrPort{netip.MustParseAddrPort("198.18.1.1:8080"), netip.MustParseAddrPort("198.18.1.2:8080")}
	tab := waitTable(t, sink, "app.example routes to the ready endpoints", func(tab *ingress.Table) bool {
		return slices.Equal(servedBy(tab, "app.example", "/"), ready)
	})
	for host, want := range map[string]bool{"legacy.example": true, "classless.example": true, "foreign.example": false} {
		if got := tab.Route(host, "/") != nil; got != want {
			t.Errorf("%s routed = %v, want %v", host, got, want)
		}
	}
	if tab.Certificate("app.example") == nil || !tab.Certificate("app.example").Leaf.Equal(cert.Leaf) {
		t.Error("app.example is not served the certificate of its Secret")
	}
	if !c.Synced() {
		t.Error("Synced is false after a Table was published")
	}
	// Events were recorded before the Table was published.
	events := drain(rec)
	for _, want := range []string{
		"Warning AnnotationIgnored annotation nginx.ingress.kubernetes.io/configuration-snippet",
		"Warning PathConflict host app.example path / (Prefix) is also defined by Ingress web/app",
		"Warning BackendUnavailable Service web/nosuchservice not found",
	} {
		if !slices.ContainsFunc(events, func(e string) bool { return strings.HasPrefix(e, want) }) {
			t.Errorf("no Event %q in %q", want, events)
		}
	}
	if len(events) != 3 {
		t.Errorf("%d Events, want 3: %q", len(events), events)
	}

	// Status: every handled Ingress gets the publish Service's address; others not.
	waitStatus := func(name, ip string) {
		t.Helper()
		err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			got, err := client.NetworkingV1().Ingresses("web").Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			lb := got.Status.LoadBalancer.Ingress
			return len(lb) == 1 && lb[0].IP == ip, nil
		})
		if err != nil {
			t.Fatalf("status of %s never became %s: %v", name, ip, err)
		}
	}
	for _, name := range []string{"app", "copycat", "legacy", "classless", "missing"} {
		waitStatus(name, "192.0.2.200")
	}
	foreign, _ := client.NetworkingV1().Ingresses("web").Get(ctx, "foreign", metav1.GetOptions{})
	if len(foreign.Status.LoadBalancer.Ingress) != 0 {
		t.Errorf("an Ingress of another class got status %v", foreign.Status.LoadBalancer.Ingress)
	}

	// An endpoint turns unready: a new Table without it, and no repeated Events.
	sl, _ := client.DiscoveryV1().EndpointSlices("web").Get(ctx, "web-abc", metav1.GetOptions{})
	sl.Endpoints[0].Conditions.Ready = ptr.To(false)
	sl.ResourceVersion = "2"
	if _, err := client.DiscoveryV1().EndpointSlices("web").Update(ctx, sl, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitTable(t, sink, "198.18.1.1 is gone", func(tab *ingress.Table) bool {
		return slices.Equal(servedBy(tab, "app.example", "/"), ready[1:])
	})
	if again := drain(rec); len(again) != 0 {
		t.Errorf("Events repeated on an unrelated change: %q", again)
	}

	// The Secret is rotated: the next Table serves the new certificate.
	rotated, newCert := tlsSecret(t, "app-tls", "app.example")
	rotated.ResourceVersion = "2"
	if _, err := client.CoreV1().Secrets("web").Update(ctx, rotated, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitTable(t, sink, "the rotated certificate is served", func(tab *ingress.Table) bool {
		c := tab.Certificate("app.example")
		return c != nil && c.Leaf.Equal(newCert.Leaf)
	})

	// A broken Secret: an Event, the host falls back to the default certificate.
	broken := rotated.DeepCopy()
	broken.Data[v1.TLSPrivateKeyKey] = []byte("garbage")
	broken.ResourceVersion = "3"
	if _, err := client.CoreV1().Secrets("web").Update(ctx, broken, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitTable(t, sink, "the broken Secret is not served", func(tab *ingress.Table) bool {
		return tab.Certificate("app.example") == nil && tab.HasTLS("app.example")
	})
	if ev := drain(rec); len(ev) != 1 || !strings.HasPrefix(ev[0], "Warning SecretInvalid") {
		t.Errorf("Events after breaking the Secret: %q, want one SecretInvalid", ev)
	}

	// Our IngressClass stops being the default: the class-less Ingress is dropped.
	ic, _ := client.NetworkingV1().IngressClasses().Get(ctx, "ironlb", metav1.GetOptions{})
	ic.Annotations = nil
	ic.ResourceVersion = "2"
	if _, err := client.NetworkingV1().IngressClasses().Update(ctx, ic, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitTable(t, sink, "classless.example is no longer routed", func(tab *ingress.Table) bool {
		return tab.Route("classless.example", "/") == nil && tab.Route("legacy.example", "/") != nil
	})

	// The publish Service gets another address: statuses follow.
	pub, _ := client.CoreV1().Services("ironlb-system").Get(ctx, "ironlb-ingress", metav1.GetOptions{})
	pub.Status.LoadBalancer.Ingress = []v1.LoadBalancerIngress{{IP: "192.0.2.201"}}
	pub.ResourceVersion = "2"
	if _, err := client.CoreV1().Services("ironlb-system").UpdateStatus(ctx, pub, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitStatus("app", "192.0.2.201")
	waitStatus("legacy", "192.0.2.201")
}

func TestConfigErrors(t *testing.T) {
	client := fake.NewClientset()
	for _, cfg := range []Config{
		{Client: client},
		{Sink: make(chanSink)},
		{Client: client, Sink: make(chanSink), PublishService: "no-slash"},
		{Client: client, Sink: make(chanSink), DefaultCertificate: "a/b/c"},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
}
