package e2e

import (
	"path/filepath"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ironlb/ironlb/test/render"
)

// The installations users run, rendered with the libraries their tools embed.
var kustomizations = []string{"", "with-ingress", "kube-proxy-replacement"}

const defaultImage = "ghcr.io/ironlb/ironlb:dev"

// chartNonDefault are values a user might well set: another namespace, image,
// class, ports, log level, scheduling, and every optional part on.
var chartNonDefault = map[string]any{
	"image":    map[string]any{"repository": "registry.example/lb/ironlb", "tag": "v9.9.9", "pullPolicy": "Always"},
	"logLevel": 4,
	"metrics":  map[string]any{"scrapeAnnotations": false},
	"controller": map[string]any{
		"replicas": 3, "serveClassless": false, "lbClass": "example.com/lb",
		"metrics":             map[string]any{"address": "0.0.0.0", "port": 9472},
		"resources":           map[string]any{"requests": map[string]any{"cpu": "10m", "memory": "32Mi"}, "limits": map[string]any{"memory": "128Mi"}},
		"nodeSelector":        map[string]any{"node-role.kubernetes.io/control-plane": ""},
		"tolerations":         []any{map[string]any{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"}},
		"extraArgs":           []any{"--concurrent-service-syncs=4"},
		"podDisruptionBudget": map[string]any{"enabled": true, "maxUnavailable": 2},
	},
	"ingress": map[string]any{"enabled": true, "className": "edge", "defaultClass": true, "replicas": 3, "metrics": map[string]any{"port": 9254}},
}

const chartNonDefaultNamespace = "lb-system"

func repoPath(parts ...string) string {
	return filepath.Join(append([]string{env.RepoRoot}, parts...)...)
}

func renderKustomize(t *testing.T, overlay string) render.Objects {
	t.Helper()
	objs, err := render.Kustomize(repoPath("deploy", overlay))
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func renderChart(t *testing.T, namespace string, values map[string]any) render.Objects {
	t.Helper()
	objs, err := render.Helm(repoPath("deploy", "helm", "ironlb"), "ironlb", namespace, values)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// applyRendered writes objs to a file and applies it (server-side, dryRun or not)
// to the cluster of client.
func writeRendered(t *testing.T, objs render.Objects) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "rendered.yaml")
	if err := objs.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	return path
}

func ensureNamespace(t *testing.T, name string) {
	t.Helper()
	_, err := env.Cluster.Client.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

// images are the images of every container and init container of objs.
func images(t *testing.T, objs render.Objects) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, u := range objs {
		var spec *corev1.PodSpec
		switch u.GetKind() {
		case "Deployment":
			d, err := objs.Deployment(u.GetNamespace(), u.GetName())
			if err != nil {
				t.Fatal(err)
			}
			spec = &d.Spec.Template.Spec
		case "DaemonSet":
			d, err := objs.DaemonSet(u.GetNamespace(), u.GetName())
			if err != nil {
				t.Fatal(err)
			}
			spec = &d.Spec.Template.Spec
		default:
			continue
		}
		for _, c := range append(slices.Clone(spec.InitContainers), spec.Containers...) {
			out[render.Key(u)+" "+c.Name] = c.Image
		}
	}
	return out
}

// Every installation, from kustomize and from the chart with default and other
// values, passes the real API server's validation and admission (server-side
// dry run: schemas, CEL rules of the CRDs, RBAC objects, PodDisruptionBudget),
// and runs one image in every container.
func TestInstallManifestsAreAccepted(t *testing.T) {
	ensureNamespace(t, chartNonDefaultNamespace)
	type install struct {
		name  string
		objs  render.Objects
		image string
	}
	var all []install
	for _, k := range kustomizations {
		all = append(all, install{"kubectl apply -k deploy/" + k, renderKustomize(t, k), defaultImage})
	}
	all = append(all,
		install{"helm install (default values)", renderChart(t, "ironlb-system", nil), defaultImage},
		install{"helm install (other values)", renderChart(t, chartNonDefaultNamespace, chartNonDefault), "registry.example/lb/ironlb:v9.9.9"},
	)
	for _, in := range all {
		t.Run(in.name, func(t *testing.T) {
			if err := env.Cluster.Apply(t.Context(), true, writeRendered(t, in.objs)); err != nil {
				t.Fatalf("the API server refuses %s: %v", in.name, err)
			}
			imgs := images(t, in.objs)
			if len(imgs) < 2 {
				t.Fatalf("containers %v: want at least the controller and its init container", imgs)
			}
			for c, img := range imgs {
				if img != in.image {
					t.Errorf("%s runs %s, want %s (one image variable)", c, img, in.image)
				}
			}
		})
	}
}

// The containerlab topology's ironlb objects pass the API server's validation.
func TestContainerlabObjectsAreAccepted(t *testing.T) {
	if err := env.Cluster.Apply(t.Context(), true, repoPath("test", "containerlab", "ironlb.yaml")); err != nil {
		t.Fatal(err)
	}
}
