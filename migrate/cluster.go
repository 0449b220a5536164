package migrate

import (
	"context"
	"encoding/json"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"

	"github.com/ironlb/ironlb/api/v1alpha1"
)

// metallbResources are read from a cluster, newest served version first.
var metallbResources = []struct {
	resource string
	versions []string
	required bool
}{
	{"ipaddresspools", []string{"v1beta1"}, true},
	{"l2advertisements", []string{"v1beta1"}, false},
	{"bgpadvertisements", []string{"v1beta1"}, false},
	{"bgppeers", []string{"v1beta2", "v1beta1"}, false},
	{"communities", []string{"v1beta1"}, false},
	{"bfdprofiles", []string{"v1beta1"}, false},
}

// ReadCluster adds the MetalLB objects of a cluster to m: those in namespace, or
// in every namespace when it is "". A kind whose CRD is not installed is
// skipped, except IPAddressPool (without it there is nothing to migrate).
func (m *MetalLB) ReadCluster(ctx context.Context, dyn dynamic.Interface, namespace string) error {
	for _, r := range metallbResources {
		var list *unstructured.UnstructuredList
		var err error
		for _, v := range r.versions {
			gvr := schema.GroupVersionResource{Group: MetalLBGroup, Version: v, Resource: r.resource}
			list, err = dyn.Resource(gvr).Namespace(namespace).List(ctx, metav1.ListOptions{})
			if !apierrors.IsNotFound(err) {
				break
			}
		}
		if apierrors.IsNotFound(err) && !r.required {
			continue
		}
		if err != nil {
			return fmt.Errorf("listing %s.%s: %w", r.resource, MetalLBGroup, err)
		}
		for _, item := range list.Items {
			js, err := json.Marshal(item.Object)
			if err != nil {
				return err
			}
			if _, err := m.addJSON(js); err != nil {
				return fmt.Errorf("%s.%s: %w", r.resource, MetalLBGroup, err)
			}
		}
	}
	return nil
}

// FieldManager is the server-side apply field manager of Apply.
const FieldManager = "ironlb-migrate-metallb"

// Apply creates or updates objs (Result.Objects) by server-side apply. It stops
// at the first error and names the object.
func Apply(ctx context.Context, dyn dynamic.Interface, objs []*unstructured.Unstructured) error {
	for _, o := range objs {
		gvk := o.GroupVersionKind()
		var ri dynamic.ResourceInterface
		switch {
		case gvk.Group == "" && gvk.Kind == "Secret":
			ri = dyn.Resource(schema.GroupVersionResource{Version: "v1", Resource: "secrets"}).Namespace(o.GetNamespace())
		case gvk.GroupVersion() == v1alpha1.SchemeGroupVersion && gvk.Kind == "IPPool":
			ri = dyn.Resource(v1alpha1.IPPoolsResource)
		case gvk.GroupVersion() == v1alpha1.SchemeGroupVersion && gvk.Kind == "BGPPeer":
			ri = dyn.Resource(v1alpha1.BGPPeersResource)
		default:
			return fmt.Errorf("applying %s %s: not an object the migration writes", gvk, o.GetName())
		}
		data, err := json.Marshal(o.Object)
		if err != nil {
			return err
		}
		if _, err := ri.Patch(ctx, o.GetName(), types.ApplyPatchType, data, metav1.PatchOptions{FieldManager: FieldManager}); err != nil {
			return fmt.Errorf("applying %s %s: %w", gvk.Kind, o.GetName(), err)
		}
	}
	return nil
}
