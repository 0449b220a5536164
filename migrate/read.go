package migrate

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// Read adds the MetalLB objects of a YAML or JSON stream (several documents,
// and Lists such as `kubectl get ipaddresspools -o yaml` prints) to m. Objects
// of other groups (Services, Namespaces, ...) are skipped and their names
// returned, so a caller can say what was not looked at. source names the stream
// in errors. An object with a field MetalLB v0.15 does not define is an error:
// nothing is dropped without a word.
func (m *MetalLB) Read(r io.Reader, source string) (skipped []string, err error) {
	yr := utilyaml.NewYAMLReader(bufio.NewReader(r))
	for n := 1; ; n++ {
		raw, err := yr.Read()
		if errors.Is(err, io.EOF) {
			return skipped, nil
		}
		if err != nil {
			return skipped, fmt.Errorf("%s (document %d): %w", source, n, err)
		}
		js, err := yaml.YAMLToJSON(raw)
		if err != nil {
			return skipped, fmt.Errorf("%s (document %d): %w", source, n, err)
		}
		if s := strings.TrimSpace(string(js)); s == "null" || s == "" || s == "{}" {
			continue
		}
		sk, err := m.addJSON(js)
		if err != nil {
			return skipped, fmt.Errorf("%s (document %d): %w", source, n, err)
		}
		skipped = append(skipped, sk...)
	}
}

// header is what every object and List starts with.
type header struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Items      []json.RawMessage `json:"items"`
	Metadata   struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"metadata"`
}

func (m *MetalLB) addJSON(js []byte) (skipped []string, err error) {
	var h header
	if err := json.Unmarshal(js, &h); err != nil {
		return nil, fmt.Errorf("not a Kubernetes object: %w", err)
	}
	if h.Kind == "" || h.APIVersion == "" {
		return nil, errors.New("object without apiVersion or kind")
	}
	if strings.HasSuffix(h.Kind, "List") && h.Items != nil {
		for i, item := range h.Items {
			sk, err := m.addJSON(item)
			if err != nil {
				return skipped, fmt.Errorf("%s item %d: %w", h.Kind, i, err)
			}
			skipped = append(skipped, sk...)
		}
		return skipped, nil
	}
	group, _, _ := strings.Cut(h.APIVersion, "/")
	if !strings.Contains(h.APIVersion, "/") {
		group = ""
	}
	id := h.Kind + " " + h.Metadata.Name
	if h.Metadata.Namespace != "" {
		id = h.Kind + " " + h.Metadata.Namespace + "/" + h.Metadata.Name
	}
	if group != MetalLBGroup {
		return []string{h.APIVersion + " " + id}, nil
	}
	if h.Metadata.Name == "" {
		return nil, fmt.Errorf("%s without metadata.name", h.Kind)
	}
	switch h.Kind {
	case "IPAddressPool":
		err = decodeAppend(js, &m.Pools)
	case "L2Advertisement":
		err = decodeAppend(js, &m.L2Advertisements)
	case "BGPAdvertisement":
		err = decodeAppend(js, &m.BGPAdvertisements)
	case "BGPPeer":
		err = decodeAppend(js, &m.Peers)
	case "Community":
		err = decodeAppend(js, &m.Communities)
	case "BFDProfile":
		err = decodeAppend(js, &m.BFDProfiles)
	default:
		// MetalLB's status kinds (ServiceL2Status, ServiceBGPStatus) and the
		// deprecated AddressPool carry nothing to migrate.
		return []string{h.APIVersion + " " + id}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w (this tool reads the fields of MetalLB v0.15)", id, err)
	}
	return nil, nil
}

// decodeAppend decodes js strictly (unknown fields are errors) and appends the
// object to list.
func decodeAppend[T any](js []byte, list *[]T) error {
	var v T
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		return err
	}
	*list = append(*list, v)
	return nil
}
