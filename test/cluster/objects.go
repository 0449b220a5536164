package cluster

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/yaml"
)

// FieldManager is the server-side-apply field manager of the harness.
const FieldManager = "ironlb-lab"

// InstallCRDs creates (or updates) every CustomResourceDefinition in the *.yaml,
// *.yml and *.json files of dir and waits until each is Established. An error
// from the API server (schema, CEL syntax or cost) is returned as is, naming the
// file and CRD.
func (c *Cluster) InstallCRDs(ctx context.Context, dir string) error {
	docs, err := readDir(dir)
	if err != nil {
		return err
	}
	crdClient := c.APIExtensions.ApiextensionsV1().CustomResourceDefinitions()
	var names []string
	for _, d := range docs {
		if d.obj.GetKind() != "CustomResourceDefinition" {
			continue
		}
		var crd apiextensionsv1.CustomResourceDefinition
		if err := runtimeFromUnstructured(d.obj, &crd); err != nil {
			return fmt.Errorf("%s: %w", d, err)
		}
		_, err := crdClient.Create(ctx, &crd, metav1.CreateOptions{FieldManager: FieldManager})
		if apierrors.IsAlreadyExists(err) {
			err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
				old, err := crdClient.Get(ctx, crd.Name, metav1.GetOptions{})
				if err != nil {
					return err
				}
				crd.ResourceVersion = old.ResourceVersion
				_, err = crdClient.Update(ctx, &crd, metav1.UpdateOptions{FieldManager: FieldManager})
				return err
			})
		}
		if err != nil {
			return fmt.Errorf("%s: %w", d, err)
		}
		names = append(names, crd.Name)
	}
	if len(names) == 0 {
		return fmt.Errorf("no CustomResourceDefinition in %s", dir)
	}
	for _, name := range names {
		if err := c.waitEstablished(ctx, name); err != nil {
			return err
		}
	}
	c.mapperReset()
	return nil
}

func (c *Cluster) waitEstablished(ctx context.Context, name string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		crd, err := c.APIExtensions.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			for _, cond := range crd.Status.Conditions {
				if cond.Type == apiextensionsv1.Established && cond.Status == apiextensionsv1.ConditionTrue {
					return nil
				}
				if cond.Type == apiextensionsv1.NamesAccepted && cond.Status == apiextensionsv1.ConditionFalse {
					return fmt.Errorf("CRD %s: names not accepted: %s", name, cond.Message)
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("CRD %s not Established: %w (last error: %v)", name, ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Apply creates or updates every object of the given multi-document YAML (or
// JSON) files by server-side apply (field manager "ironlb-lab"), resolving kinds
// through discovery. Namespaces go first, then CRDs (waited for until
// Established), then the rest in file order. Namespaced objects without a
// namespace go to "default".
//
// With dryRun the server validates and admits every object (DryRun: All) but
// stores nothing; an object in a namespace that the same files declare but that
// does not exist yet is validated in "default" instead, and objects of kinds
// whose CRD is not installed are refused. Errors name the file, document, kind
// and name.
func (c *Cluster) Apply(ctx context.Context, dryRun bool, files ...string) error {
	var docs []doc
	for _, f := range files {
		d, err := readFile(f)
		if err != nil {
			return err
		}
		docs = append(docs, d...)
	}
	rank := func(d doc) int {
		switch d.obj.GroupVersionKind().GroupKind().String() {
		case "Namespace":
			return 0
		case "CustomResourceDefinition.apiextensions.k8s.io":
			return 1
		}
		return 2
	}
	sort.SliceStable(docs, func(i, j int) bool { return rank(docs[i]) < rank(docs[j]) })
	declaredNS := map[string]bool{}
	for _, d := range docs {
		if rank(d) == 0 {
			declaredNS[d.obj.GetName()] = true
		}
	}

	opts := metav1.PatchOptions{FieldManager: FieldManager, Force: ptr(true)}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	var crds []string
	for _, d := range docs {
		if rank(d) == 2 && len(crds) > 0 {
			for _, name := range crds {
				if err := c.waitEstablished(ctx, name); err != nil {
					return fmt.Errorf("%s: %w", d, err)
				}
			}
			crds = nil
			c.mapperReset()
		}
		obj := d.obj
		gvk := obj.GroupVersionKind()
		mapping, err := c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if meta.IsNoMatchError(err) {
			c.mapperReset()
			mapping, err = c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		}
		if err != nil {
			return fmt.Errorf("%s: unknown kind (CRD not installed?): %w", d, err)
		}
		var ri interface {
			Patch(context.Context, string, types.PatchType, []byte, metav1.PatchOptions, ...string) (*unstructured.Unstructured, error)
		}
		if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
			ns := obj.GetNamespace()
			if ns == "" {
				ns = metav1.NamespaceDefault
			}
			if dryRun && declaredNS[ns] {
				if _, err := c.Client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); apierrors.IsNotFound(err) {
					ns = metav1.NamespaceDefault
				}
			}
			obj = obj.DeepCopy()
			obj.SetNamespace(ns)
			ri = c.Dynamic.Resource(mapping.Resource).Namespace(ns)
		} else {
			ri = c.Dynamic.Resource(mapping.Resource)
		}
		data, err := json.Marshal(obj.Object)
		if err != nil {
			return fmt.Errorf("%s: %w", d, err)
		}
		if _, err := ri.Patch(ctx, obj.GetName(), types.ApplyPatchType, data, opts); err != nil {
			return fmt.Errorf("%s: %w", d, err)
		}
		if rank(d) == 1 && !dryRun {
			crds = append(crds, obj.GetName())
		}
	}
	for _, name := range crds {
		if err := c.waitEstablished(ctx, name); err != nil {
			return err
		}
	}
	c.mapperReset()
	return nil
}

// doc is one object of a manifest file.
type doc struct {
	file  string
	index int // document number in the file, from 1
	obj   *unstructured.Unstructured
}

func (d doc) String() string {
	ns := d.obj.GetNamespace()
	if ns != "" {
		ns += "/"
	}
	return fmt.Sprintf("%s (document %d): %s %s%s", d.file, d.index, d.obj.GetKind(), ns, d.obj.GetName())
}

func readDir(dir string) ([]doc, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var docs []doc
	for _, e := range entries {
		ext := strings.ToLower(filepath.Ext(e.Name()))
		if e.IsDir() || (ext != ".yaml" && ext != ".yml" && ext != ".json") {
			continue
		}
		d, err := readFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		docs = append(docs, d...)
	}
	return docs, nil
}

// readFile splits a multi-document YAML/JSON file into objects, expanding Lists.
func readFile(path string) ([]doc, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
	var docs []doc
	for n := 1; ; n++ {
		raw, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s (document %d): %w", path, n, err)
		}
		js, err := yaml.YAMLToJSON(raw)
		if err != nil {
			return nil, fmt.Errorf("%s (document %d): %w", path, n, err)
		}
		if s := strings.TrimSpace(string(js)); s == "null" || s == "" || s == "{}" {
			continue
		}
		obj := &unstructured.Unstructured{}
		if err := obj.UnmarshalJSON(js); err != nil {
			return nil, fmt.Errorf("%s (document %d): %w", path, n, err)
		}
		if obj.IsList() {
			list, err := obj.ToList()
			if err != nil {
				return nil, fmt.Errorf("%s (document %d): %w", path, n, err)
			}
			for i := range list.Items {
				docs = append(docs, doc{file: path, index: n, obj: &list.Items[i]})
			}
			continue
		}
		if obj.GetName() == "" {
			return nil, fmt.Errorf("%s (document %d): %s without metadata.name", path, n, obj.GetKind())
		}
		docs = append(docs, doc{file: path, index: n, obj: obj})
	}
	return docs, nil
}

func runtimeFromUnstructured(u *unstructured.Unstructured, into any) error {
	b, err := json.Marshal(u.Object)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, into)
}

func ptr[T any](v T) *T { return &v }

// Node taints the node lifecycle controller would manage.
const (
	taintNotReady    = "node.kubernetes.io/not-ready"
	taintUnreachable = "node.kubernetes.io/unreachable"
)

// CreateNode creates (or updates) Node name with the labels, an InternalIP and
// Hostname address and condition Ready=True, standing in for a kubelet. The
// not-ready taint that admission puts on new nodes is removed, as the node
// lifecycle controller would.
func (c *Cluster) CreateNode(ctx context.Context, name string, internalIP netip.Addr, labels map[string]string) error {
	nodes := c.Client.CoreV1().Nodes()
	lbls := map[string]string{"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"}
	for k, v := range labels {
		lbls[k] = v
	}
	_, err := nodes.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: lbls}}, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
			n, err := nodes.Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if n.Labels == nil {
				n.Labels = map[string]string{}
			}
			for k, v := range lbls {
				n.Labels[k] = v
			}
			_, err = nodes.Update(ctx, n, metav1.UpdateOptions{})
			return err
		})
	}
	if err != nil {
		return fmt.Errorf("creating Node %s: %w", name, err)
	}
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := nodes.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		n.Status.Addresses = []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: internalIP.String()},
			{Type: corev1.NodeHostName, Address: name},
		}
		_, err = nodes.UpdateStatus(ctx, n, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("setting Node %s addresses: %w", name, err)
	}
	return c.SetNodeReady(ctx, name, true)
}

// SetNodeReady sets the Node's Ready condition (status subresource) and, like the
// node lifecycle controller, removes the not-ready/unreachable taints when ready
// and adds node.kubernetes.io/not-ready:NoSchedule when not.
func (c *Cluster) SetNodeReady(ctx context.Context, name string, ready bool) error {
	nodes := c.Client.CoreV1().Nodes()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := nodes.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		now := metav1.Now()
		cond := corev1.NodeCondition{
			Type: corev1.NodeReady, Status: corev1.ConditionTrue,
			Reason: "KubeletReady", Message: "lab node is ready",
			LastHeartbeatTime: now, LastTransitionTime: now,
		}
		if !ready {
			cond.Status, cond.Reason, cond.Message = corev1.ConditionFalse, "KubeletNotReady", "lab node set not ready"
		}
		i := slices.IndexFunc(n.Status.Conditions, func(x corev1.NodeCondition) bool { return x.Type == corev1.NodeReady })
		if i < 0 {
			n.Status.Conditions = append(n.Status.Conditions, cond)
		} else {
			if n.Status.Conditions[i].Status == cond.Status {
				cond.LastTransitionTime = n.Status.Conditions[i].LastTransitionTime
			}
			n.Status.Conditions[i] = cond
		}
		_, err = nodes.UpdateStatus(ctx, n, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("setting Node %s Ready=%v: %w", name, ready, err)
	}
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := nodes.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		taints := slices.DeleteFunc(slices.Clone(n.Spec.Taints), func(t corev1.Taint) bool {
			return t.Key == taintNotReady || t.Key == taintUnreachable
		})
		if !ready {
			now := metav1.Now()
			taints = append(taints, corev1.Taint{Key: taintNotReady, Effect: corev1.TaintEffectNoSchedule, TimeAdded: &now})
		}
		if slices.EqualFunc(taints, n.Spec.Taints, func(a, b corev1.Taint) bool { return a.MatchTaint(&b) }) {
			return nil
		}
		n.Spec.Taints = taints
		_, err = nodes.Update(ctx, n, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("updating Node %s taints: %w", name, err)
	}
	return nil
}

// Endpoint is one backend "pod" (a process, there is no kubelet).
type Endpoint struct {
	Name        string // pod name, used as the endpoint's targetRef
	Node        string
	IP          netip.Addr
	Ready       bool
	Serving     bool
	Terminating bool
}

// EndpointSlice labels of the slices SetEndpoints writes.
const (
	LabelManagedBy = "endpointslice.kubernetes.io/managed-by"
	ManagedBy      = "lab.ironlb.io"
)

// SetEndpoints makes the EndpointSlices of Service namespace/service hold exactly
// eps on port/proto: IPv4 endpoints in slice "<service>-lab", IPv6 endpoints in
// "<service>-lab-v6" (a slice has one address type). A slice of a family no
// longer present is emptied if it exists. The port name is taken from the
// Service's port whose targetPort (or port) equals port, if the Service exists.
func (c *Cluster) SetEndpoints(ctx context.Context, namespace, service string, port int32, proto corev1.Protocol, eps []Endpoint) error {
	portName := ""
	if svc, err := c.Client.CoreV1().Services(namespace).Get(ctx, service, metav1.GetOptions{}); err == nil {
		for _, sp := range svc.Spec.Ports {
			tp := sp.TargetPort
			if tp.Type == intstr.Int && tp.IntVal == 0 {
				tp = intstr.FromInt32(sp.Port)
			}
			if sp.Protocol == proto && tp.Type == intstr.Int && tp.IntVal == port {
				portName = sp.Name
				break
			}
		}
	} else if !apierrors.IsNotFound(err) {
		return err
	}
	byFamily := map[discoveryv1.AddressType][]discoveryv1.Endpoint{}
	for _, ep := range eps {
		if !ep.IP.IsValid() {
			return fmt.Errorf("endpoint %q: invalid IP", ep.Name)
		}
		at := discoveryv1.AddressTypeIPv4
		if ep.IP.Is6() && !ep.IP.Is4In6() {
			at = discoveryv1.AddressTypeIPv6
		}
		e := discoveryv1.Endpoint{
			Addresses: []string{ep.IP.Unmap().String()},
			Conditions: discoveryv1.EndpointConditions{
				Ready: ptr(ep.Ready), Serving: ptr(ep.Serving), Terminating: ptr(ep.Terminating),
			},
		}
		if ep.Node != "" {
			e.NodeName = ptr(ep.Node)
		}
		if ep.Name != "" {
			e.TargetRef = &corev1.ObjectReference{Kind: "Pod", Namespace: namespace, Name: ep.Name}
		}
		byFamily[at] = append(byFamily[at], e)
	}
	sliceClient := c.Client.DiscoveryV1().EndpointSlices(namespace)
	for _, at := range []discoveryv1.AddressType{discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6} {
		name := service + "-lab"
		if at == discoveryv1.AddressTypeIPv6 {
			name += "-v6"
		}
		list, present := byFamily[at]
		want := &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{
				Name: name, Namespace: namespace,
				Labels: map[string]string{discoveryv1.LabelServiceName: service, LabelManagedBy: ManagedBy},
			},
			AddressType: at,
			Endpoints:   list,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr(portName), Port: ptr(port), Protocol: ptr(proto)}},
		}
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			old, err := sliceClient.Get(ctx, name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				if !present && !(at == discoveryv1.AddressTypeIPv4 && len(byFamily) == 0) {
					return nil // nothing of this family, and no slice to empty
				}
				_, err = sliceClient.Create(ctx, want, metav1.CreateOptions{})
				return err
			}
			if err != nil {
				return err
			}
			want.ResourceVersion = old.ResourceVersion
			_, err = sliceClient.Update(ctx, want, metav1.UpdateOptions{})
			return err
		})
		if err != nil {
			return fmt.Errorf("EndpointSlice %s/%s: %w", namespace, name, err)
		}
	}
	return nil
}
