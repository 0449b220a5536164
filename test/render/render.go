// Package render turns ironlb's deploy/ folder into the objects a user's cluster
// receives, with the same libraries the users' tools run: kustomize builds
// (sigs.k8s.io/kustomize/api, what `kubectl apply -k` embeds) and the Helm chart
// (helm.sh/helm/v3's chart loader and template engine, what `helm install`
// renders, CRDs from the chart's crds/ folder included). The e2e suites apply
// the result to the lab's API server and run the components from the rendered
// Pod specs.
//
//	objs, err := render.Kustomize(filepath.Join(repo, "deploy"))
//	objs, err := render.Helm(filepath.Join(repo, "deploy/helm/ironlb"), "ironlb", "ironlb-system", values)
//	d, err := objs.Deployment("ironlb-system", "ironlb-controller")
//	err = objs.WriteFile(path) // then cluster.Apply(ctx, dryRun, path)
package render

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/releaseutil"
)

// Objects are rendered API objects, in the order the renderer produced them.
type Objects []*unstructured.Unstructured

// Kustomize builds the kustomization in dir, as `kubectl kustomize dir` does.
func Kustomize(dir string) (Objects, error) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	b, err := m.AsYaml()
	if err != nil {
		return nil, err
	}
	return Parse(b)
}

// Helm renders the chart in chartDir for a first installation of release name
// into namespace, with values over the chart's values.yaml, as `helm install`
// would send it: the CRDs of crds/ first, then the templates (without hooks or
// NOTES.txt) in Helm's install order.
func Helm(chartDir, name, namespace string, values map[string]any) (Objects, error) {
	ch, err := loader.Load(chartDir)
	if err != nil {
		return nil, fmt.Errorf("loading chart %s: %w", chartDir, err)
	}
	caps := chartutil.DefaultCapabilities
	vals, err := chartutil.ToRenderValues(ch, values, chartutil.ReleaseOptions{Name: name, Namespace: namespace, IsInstall: true, Revision: 1}, caps)
	if err != nil {
		return nil, fmt.Errorf("chart %s values: %w", chartDir, err)
	}
	files, err := engine.Engine{Strict: true}.Render(ch, vals)
	if err != nil {
		return nil, fmt.Errorf("rendering chart %s: %w", chartDir, err)
	}
	for f := range files {
		if strings.HasSuffix(f, "NOTES.txt") {
			delete(files, f)
		}
	}
	hooks, manifests, err := releaseutil.SortManifests(files, caps.APIVersions, releaseutil.InstallOrder)
	if err != nil {
		return nil, fmt.Errorf("chart %s: %w", chartDir, err)
	}
	if len(hooks) > 0 {
		return nil, fmt.Errorf("chart %s has hooks; this renderer does not run them", chartDir)
	}
	var all Objects
	for _, crd := range ch.CRDObjects() {
		objs, err := Parse(crd.File.Data)
		if err != nil {
			return nil, fmt.Errorf("chart %s: %s: %w", chartDir, crd.Filename, err)
		}
		all = append(all, objs...)
	}
	for _, m := range manifests {
		objs, err := Parse([]byte(m.Content))
		if err != nil {
			return nil, fmt.Errorf("chart %s: %s: %w", chartDir, m.Name, err)
		}
		all = append(all, objs...)
	}
	return all, nil
}

// Parse splits a multi-document YAML stream into objects (empty documents are
// skipped).
func Parse(b []byte) (Objects, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
	var out Objects
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		js, err := yaml.YAMLToJSON(doc)
		if err != nil {
			return nil, err
		}
		if s := strings.TrimSpace(string(js)); s == "null" || s == "{}" {
			continue
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(js); err != nil {
			return nil, err
		}
		out = append(out, u)
	}
}

// YAML writes the objects as one stream.
func (o Objects) YAML() ([]byte, error) {
	var buf bytes.Buffer
	for _, u := range o {
		b, err := yaml.Marshal(u.Object)
		if err != nil {
			return nil, err
		}
		buf.WriteString("---\n")
		buf.Write(b)
	}
	return buf.Bytes(), nil
}

// WriteFile writes the objects as one YAML stream into path.
func (o Objects) WriteFile(path string) error {
	b, err := o.YAML()
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// Find returns the object of kind (e.g. "Deployment") with namespace and name,
// or nil.
func (o Objects) Find(kind, namespace, name string) *unstructured.Unstructured {
	for _, u := range o {
		if u.GetKind() == kind && u.GetNamespace() == namespace && u.GetName() == name {
			return u
		}
	}
	return nil
}

// Keys are "Kind namespace/name" of every object, sorted.
func (o Objects) Keys() []string {
	var out []string
	for _, u := range o {
		out = append(out, Key(u))
	}
	slices.Sort(out)
	return out
}

// Key is "Kind namespace/name" (or "Kind name" for cluster-scoped objects).
func Key(u *unstructured.Unstructured) string {
	if u.GetNamespace() == "" {
		return u.GetKind() + " " + u.GetName()
	}
	return u.GetKind() + " " + u.GetNamespace() + "/" + u.GetName()
}

// Into converts u to a typed object.
func Into(u *unstructured.Unstructured, into any) error {
	return runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, into)
}

// Deployment returns the Deployment namespace/name.
func (o Objects) Deployment(namespace, name string) (*appsv1.Deployment, error) {
	u := o.Find("Deployment", namespace, name)
	if u == nil {
		return nil, fmt.Errorf("no Deployment %s/%s among %v", namespace, name, o.Keys())
	}
	var d appsv1.Deployment
	if err := Into(u, &d); err != nil {
		return nil, err
	}
	return &d, nil
}

// DaemonSet returns the DaemonSet namespace/name.
func (o Objects) DaemonSet(namespace, name string) (*appsv1.DaemonSet, error) {
	u := o.Find("DaemonSet", namespace, name)
	if u == nil {
		return nil, fmt.Errorf("no DaemonSet %s/%s among %v", namespace, name, o.Keys())
	}
	var d appsv1.DaemonSet
	if err := Into(u, &d); err != nil {
		return nil, err
	}
	return &d, nil
}

// ManifestFiles lists the YAML files under deployDir that are Kubernetes
// objects (not kustomization.yaml, not the Helm chart), relative to deployDir.
func ManifestFiles(deployDir string) ([]string, error) {
	var files []string
	err := filepath.WalkDir(deployDir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(deployDir, p)
		if d.IsDir() && rel == "helm" {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(p, ".yaml") && d.Name() != "kustomization.yaml" {
			files = append(files, rel)
		}
		return nil
	})
	return files, err
}
