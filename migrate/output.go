package migrate

import (
	"encoding/json"
	"fmt"
	"io"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// Objects returns the result as API objects in the order to create them:
// Secrets, BGPPeers, IPPools. Fields that a server fills (status,
// creationTimestamp) are left out.
func (r *Result) Objects() ([]*unstructured.Unstructured, error) {
	var all []any
	for i := range r.Secrets {
		all = append(all, &r.Secrets[i])
	}
	for i := range r.Peers {
		all = append(all, &r.Peers[i])
	}
	for i := range r.Pools {
		all = append(all, &r.Pools[i])
	}
	out := make([]*unstructured.Unstructured, 0, len(all))
	for _, o := range all {
		b, err := json.Marshal(o)
		if err != nil {
			return nil, err
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, err
		}
		delete(m, "status")
		if md, ok := m["metadata"].(map[string]any); ok {
			delete(md, "creationTimestamp")
		}
		out = append(out, &unstructured.Unstructured{Object: m})
	}
	return out, nil
}

// WriteYAML writes Objects as one YAML stream, documents separated by "---".
func (r *Result) WriteYAML(w io.Writer) error {
	objs, err := r.Objects()
	if err != nil {
		return err
	}
	for i, o := range objs {
		b, err := yaml.Marshal(o.Object)
		if err != nil {
			return err
		}
		if i > 0 {
			if _, err := io.WriteString(w, "---\n"); err != nil {
				return err
			}
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
	}
	return nil
}

// WriteReport writes the notes, one per line, and a summary line.
func (r *Result) WriteReport(w io.Writer) error {
	count := map[Severity]int{}
	for _, n := range r.Notes {
		count[n.Severity]++
		if _, err := fmt.Fprintln(w, n); err != nil {
			return err
		}
	}
	_, err := fmt.Fprintf(w, "migrated %d IPPool(s), %d BGPPeer(s), %d Secret(s); %d setting(s) changed form, %d need action, %d have no equivalent\n",
		len(r.Pools), len(r.Peers), len(r.Secrets), count[Changed], count[Action], count[Dropped])
	return err
}

// Has reports whether a note of severity sev was written.
func (r *Result) Has(sev Severity) bool {
	for _, n := range r.Notes {
		if n.Severity == sev {
			return true
		}
	}
	return false
}
