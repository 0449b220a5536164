package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/ironlb/ironlb/test/framework"
)

var (
	ippools  = framework.IPPools
	bgppeers = framework.BGPPeers
)

// namespace creates a namespace for one test. There is no namespace controller to
// finish a deletion, so the test deletes its Services itself (their finalizers are
// served by the controller) and leaves the empty namespace with the lab.
func namespace(t *testing.T, name string) string {
	t.Helper()
	_, err := env.Cluster.Client.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	return name
}

// createYAML creates one object of resource gvr from YAML; cluster-scoped objects are
// deleted at the end of the test.
func createYAML(t *testing.T, gvr schema.GroupVersionResource, doc string) (*unstructured.Unstructured, error) {
	t.Helper()
	got, err := framework.CreateYAML(t.Context(), env.Cluster.Dynamic, gvr, doc)
	if err == nil {
		t.Cleanup(func() {
			_ = env.Cluster.Dynamic.Resource(gvr).Delete(context.Background(), got.GetName(), metav1.DeleteOptions{})
		})
	}
	return got, err
}

func mustCreatePool(t *testing.T, doc string) {
	t.Helper()
	if _, err := createYAML(t, ippools, doc); err != nil {
		t.Fatalf("creating IPPool: %v", err)
	}
}

type svcOpt func(*corev1.Service)

func withAnnotations(kv ...string) svcOpt {
	return func(s *corev1.Service) {
		if s.Annotations == nil {
			s.Annotations = map[string]string{}
		}
		for i := 0; i+1 < len(kv); i += 2 {
			s.Annotations[kv[i]] = kv[i+1]
		}
	}
}

func withClass(c string) svcOpt { return func(s *corev1.Service) { s.Spec.LoadBalancerClass = &c } }

func createService(t *testing.T, ns, name string, port int32, opts ...svcOpt) *corev1.Service {
	t.Helper()
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeLoadBalancer,
			Selector: map[string]string{"app": name},
			Ports:    []corev1.ServicePort{{Port: port, TargetPort: intstr.FromInt32(80), Protocol: corev1.ProtocolTCP}},
		},
	}
	for _, o := range opts {
		o(s)
	}
	got, err := env.Cluster.Client.CoreV1().Services(ns).Create(t.Context(), s, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating Service %s/%s: %v", ns, name, err)
	}
	t.Cleanup(func() { deleteService(t, ns, name) })
	return got
}

// deleteService deletes and waits until the Service is gone (the controller removes
// the cleanup finalizer after releasing the address).
func deleteService(t *testing.T, ns, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := env.Cluster.Client.CoreV1().Services(ns).Delete(ctx, name, metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return
	}
	if err != nil {
		t.Errorf("deleting Service %s/%s: %v", ns, name, err)
		return
	}
	err = wait.PollUntilContextCancel(ctx, 50*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		_, err := env.Cluster.Client.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	if err != nil {
		t.Errorf("Service %s/%s not gone after delete (finalizer not removed?)", ns, name)
	}
}

func ingressIPs(s *corev1.Service) string {
	var ips []string
	for _, in := range s.Status.LoadBalancer.Ingress {
		mode := "?"
		if in.IPMode != nil {
			mode = string(*in.IPMode)
		}
		ips = append(ips, in.IP+"("+mode+")")
	}
	return strings.Join(ips, ",")
}

// waitIngress waits until the Service publishes any address and returns it (without
// the mode suffix) and the time it took from start.
func waitIngress(t *testing.T, ns, name string, within time.Duration) (string, *corev1.Service) {
	t.Helper()
	var svc *corev1.Service
	err := wait.PollUntilContextTimeout(t.Context(), 10*time.Millisecond, within, true, func(ctx context.Context) (bool, error) {
		s, err := env.Cluster.Client.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		svc = s
		return len(s.Status.LoadBalancer.Ingress) > 0, nil
	})
	if err != nil {
		t.Fatalf("%s/%s got no address within %v; events: %s", ns, name, within, events(t, ns, name))
	}
	in := svc.Status.LoadBalancer.Ingress[0]
	if in.IPMode == nil || *in.IPMode != corev1.LoadBalancerIPModeVIP {
		t.Errorf("%s/%s: ingress %s must have ipMode VIP", ns, name, ingressIPs(svc))
	}
	return in.IP, svc
}

// waitEvent waits for an Event with reason on object ns/name and returns its message.
func waitEvent(t *testing.T, ns, name, reason string) string {
	t.Helper()
	msg, err := framework.WaitEvent(t.Context(), env.Cluster.Client, ns, name, reason, 20*time.Second)
	if err != nil {
		t.Fatalf("no Event %s on %s/%s; events: %s", reason, ns, name, events(t, ns, name))
	}
	return msg
}

func events(t *testing.T, ns, name string) string {
	evs, err := env.Cluster.Client.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
	if err != nil {
		return err.Error()
	}
	var out []string
	for _, ev := range evs.Items {
		out = append(out, fmt.Sprintf("%s/%s: %s", ev.Type, ev.Reason, ev.Message))
	}
	return strings.Join(out, " | ")
}

// poolStatus reads an IPPool's status fields.
func poolStatus(t *testing.T, name string) map[string]any {
	t.Helper()
	u, err := env.Cluster.Dynamic.Resource(ippools).Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st, _, _ := unstructured.NestedMap(u.Object, "status")
	return st
}

func eventually(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	if err := wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, within, true, func(context.Context) (bool, error) { return cond(), nil }); err != nil {
		t.Fatalf("timed out after %v: %s", within, what)
	}
}
