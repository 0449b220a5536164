package framework

import (
	"context"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"
)

// Resources of ironlb.io/v1alpha1 (the test module does not import the main module).
var (
	IPPools  = schema.GroupVersionResource{Group: "ironlb.io", Version: "v1alpha1", Resource: "ippools"}
	BGPPeers = schema.GroupVersionResource{Group: "ironlb.io", Version: "v1alpha1", Resource: "bgppeers"}
)

// CreateYAML creates one object of resource gvr from a YAML or JSON document (in
// the document's metadata.namespace when it has one).
func CreateYAML(ctx context.Context, dyn dynamic.Interface, gvr schema.GroupVersionResource, doc string) (*unstructured.Unstructured, error) {
	var obj map[string]any
	if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
		return nil, fmt.Errorf("parsing %s: %w", gvr.Resource, err)
	}
	u := &unstructured.Unstructured{Object: obj}
	if ns := u.GetNamespace(); ns != "" {
		return dyn.Resource(gvr).Namespace(ns).Create(ctx, u, metav1.CreateOptions{})
	}
	return dyn.Resource(gvr).Create(ctx, u, metav1.CreateOptions{})
}

// WaitEvent waits up to within for an Event with reason on object ns/name and
// returns its message.
func WaitEvent(ctx context.Context, client kubernetes.Interface, ns, name, reason string, within time.Duration) (string, error) {
	var msg string
	err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, within, true, func(ctx context.Context) (bool, error) {
		evs, err := client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
		if err != nil {
			return false, nil
		}
		for _, ev := range evs.Items {
			if ev.Reason == reason {
				msg = ev.Message
				return true, nil
			}
		}
		return false, nil
	})
	return msg, err
}
