package render

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/ironlb/ironlb/test/cluster"
)

// These tests read the repository's deploy/ folder through the renderers; the
// e2e suite applies the same renders to a real API server.

var kustomizations = []string{"", "with-ingress", "kube-proxy-replacement"}

func repoPath(t *testing.T, parts ...string) string {
	t.Helper()
	dir, err := cluster.TestModuleDir()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(append([]string{filepath.Dir(dir)}, parts...)...)
}

func renderKustomize(t *testing.T, overlay string) Objects {
	t.Helper()
	objs, err := Kustomize(repoPath(t, "deploy", overlay))
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func renderChart(t *testing.T, namespace string, values map[string]any) Objects {
	t.Helper()
	objs, err := Helm(repoPath(t, "deploy", "helm", "ironlb"), "ironlb", namespace, values)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// Kustomize reaches every manifest under deploy/: each object of each file is in
// some installation, and every CRD is in every installation.
func TestInstallManifestsAreComplete(t *testing.T) {
	rendered := map[string]bool{}
	for _, k := range kustomizations {
		for _, key := range renderKustomize(t, k).Keys() {
			rendered[key] = true
		}
	}
	files, err := ManifestFiles(repoPath(t, "deploy"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 8 {
		t.Fatalf("manifest files %v", files)
	}
	for _, f := range files {
		b, err := os.ReadFile(repoPath(t, "deploy", f))
		if err != nil {
			t.Fatal(err)
		}
		objs, err := Parse(b)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, key := range objs.Keys() {
			if !rendered[key] {
				t.Errorf("deploy/%s: %s is in no kustomize installation", f, key)
			}
		}
	}
	crds, _ := filepath.Glob(repoPath(t, "deploy", "crds", "ironlb.io_*.yaml"))
	chart := renderChart(t, "ironlb-system", nil)
	for _, f := range crds {
		name := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(f), "ironlb.io_"), ".yaml") + ".ironlb.io"
		for _, k := range kustomizations {
			if renderKustomize(t, k).Find("CustomResourceDefinition", "", name) == nil {
				t.Errorf("CRD %s is not in deploy/%s (list it in deploy/crds/kustomization.yaml)", name, k)
			}
		}
		if chart.Find("CustomResourceDefinition", "", name) == nil {
			t.Errorf("CRD %s is not in the chart", name)
		}
	}
}

// The chart with default values installs what `kubectl apply -k deploy/` does:
// the same objects (the chart leaves the Namespace to `helm --create-namespace`),
// the same RBAC rules, and Pods that run the same commands with the same
// security context, probes and resources. Labels and selectors may differ.
func TestChartMatchesKustomize(t *testing.T) {
	k := renderKustomize(t, "")
	h := renderChart(t, "ironlb-system", nil)
	kk := slices.DeleteFunc(k.Keys(), func(s string) bool { return s == "Namespace ironlb-system" })
	if !slices.Equal(kk, h.Keys()) {
		t.Fatalf("kustomize installs %v\nthe chart installs %v", kk, h.Keys())
	}
	for _, u := range k {
		other := h.Find(u.GetKind(), u.GetNamespace(), u.GetName())
		if other == nil {
			continue
		}
		a, b := essence(t, u), essence(t, other)
		if !reflect.DeepEqual(a, b) {
			t.Errorf("%s differs between kustomize and the chart:\nkustomize: %v\nchart:     %v", Key(u), a, b)
		}
	}
	// With ingress on, the chart matches deploy/with-ingress the same way.
	k = renderKustomize(t, "with-ingress")
	h = renderChart(t, "ironlb-system", map[string]any{"ingress": map[string]any{"enabled": true}})
	for _, u := range k {
		if other := h.Find(u.GetKind(), u.GetNamespace(), u.GetName()); other != nil {
			if a, b := essence(t, u), essence(t, other); !reflect.DeepEqual(a, b) {
				t.Errorf("%s differs between deploy/with-ingress and the chart with ingress.enabled:\nkustomize: %v\nchart:     %v", Key(u), a, b)
			}
		} else if u.GetKind() != "Namespace" {
			t.Errorf("the chart with ingress.enabled lacks %s", Key(u))
		}
	}
}

// essence is what must agree between two renderings of one object.
func essence(t *testing.T, u *unstructured.Unstructured) any {
	t.Helper()
	o := u.DeepCopy().Object
	delete(o, "metadata")
	switch u.GetKind() {
	case "Deployment", "DaemonSet":
		spec, _, _ := unstructured.NestedMap(o, "spec", "template", "spec")
		delete(spec, "affinity") // label selectors inside
		return fmt.Sprint(spec, " replicas=", o["spec"].(map[string]any)["replicas"])
	case "PodDisruptionBudget", "Service":
		spec, _, _ := unstructured.NestedMap(o, "spec")
		delete(spec, "selector")
		return fmt.Sprint(spec)
	}
	return fmt.Sprint(o)
}

// deploy/kube-proxy-replacement turns the speakers' proxy on and changes nothing
// else.
func TestKubeProxyReplacementOverlay(t *testing.T) {
	base, overlay := renderKustomize(t, ""), renderKustomize(t, "kube-proxy-replacement")
	if !slices.Equal(base.Keys(), overlay.Keys()) {
		t.Fatalf("the overlay installs %v, the base %v", overlay.Keys(), base.Keys())
	}
	ds := base.Find("DaemonSet", "ironlb-system", "ironlb-speaker")
	for _, u := range base {
		o := overlay.Find(u.GetKind(), u.GetNamespace(), u.GetName())
		if u.GetKind() == "DaemonSet" && u.GetName() == "ironlb-speaker" {
			continue
		}
		if !reflect.DeepEqual(u.Object, o.Object) {
			t.Errorf("the overlay changes %s", Key(u))
		}
	}
	if ds == nil {
		t.Log("deploy/ has no speaker DaemonSet yet: the overlay has nothing to turn on")
		return
	}
	args := func(objs Objects) []string {
		d, err := objs.DaemonSet("ironlb-system", "ironlb-speaker")
		if err != nil {
			t.Fatal(err)
		}
		return d.Spec.Template.Spec.Containers[0].Args
	}
	if slices.Contains(args(base), "--proxy=iptables") || !slices.Contains(args(overlay), "--proxy=iptables") {
		t.Errorf("speaker args: base %v, overlay %v", args(base), args(overlay))
	}
}

// No role ironlb ships grants anything to the cluster's user roles: a ClusterRole
// labelled rbac.authorization.k8s.io/aggregate-to-admin (-edit, -view) would give
// every namespace admin access to IPPools or BGPPeers (docs/security.md).
func TestNoRoleAggregatesToUsers(t *testing.T) {
	all := []Objects{renderChart(t, "ironlb-system", map[string]any{"ingress": map[string]any{"enabled": true}, "speaker": map[string]any{"enabled": true}})}
	for _, k := range kustomizations {
		all = append(all, renderKustomize(t, k))
	}
	for _, objs := range all {
		for _, u := range objs {
			if u.GetKind() != "ClusterRole" {
				continue
			}
			for l := range u.GetLabels() {
				if strings.HasPrefix(l, "rbac.authorization.k8s.io/aggregate-to-") {
					t.Errorf("%s aggregates into the users' roles (%s)", Key(u), l)
				}
			}
			if _, ok := u.Object["aggregationRule"]; ok {
				t.Errorf("%s aggregates other roles", Key(u))
			}
		}
	}
}

// Memberlist is encrypted by default: every installation's speakers read their
// key from the Secret that the controller's init container creates.
func TestMemberlistEncryptedByDefault(t *testing.T) {
	installs := map[string]Objects{"chart": renderChart(t, "ironlb-system", nil)}
	for _, k := range kustomizations {
		installs["deploy/"+k] = renderKustomize(t, k)
	}
	for name, objs := range installs {
		ds, err := objs.DaemonSet("ironlb-system", "ironlb-speaker")
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		pod := ds.Spec.Template.Spec
		file := ""
		for _, a := range pod.Containers[0].Args {
			if v, ok := strings.CutPrefix(a, "--memberlist-secret-file="); ok {
				file = v
			}
		}
		secret := ""
		for _, m := range pod.Containers[0].VolumeMounts {
			if strings.HasPrefix(file, m.MountPath+"/") {
				for _, v := range pod.Volumes {
					if v.Name == m.Name && v.Secret != nil {
						secret = v.Secret.SecretName
					}
				}
			}
		}
		if file == "" || secret == "" {
			t.Errorf("%s: the speakers' --memberlist-secret-file %q is not in a mounted Secret", name, file)
			continue
		}
		d, err := objs.Deployment("ironlb-system", "ironlb-controller")
		if err != nil {
			t.Fatal(err)
		}
		created := false
		for _, c := range d.Spec.Template.Spec.InitContainers {
			created = created || (slices.Contains(c.Command, "ensure-memberlist-secret") && slices.Contains(c.Command, "--name="+secret))
		}
		if !created {
			t.Errorf("%s: no init container creates Secret %s", name, secret)
		}
	}
}
