package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// The CRD table shows each field with its type, rules and description, nested
// fields by path, and skips label selectors' internals.
func TestCRDReference(t *testing.T) {
	raw, err := os.ReadFile("../../deploy/crds/ironlb.io_ippools.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := crdReference(&b, raw); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"### IPPool (ironlb.io/v1alpha1)",
		"Cluster-scoped; `kubectl get ippools` (short: ipp, ippool).",
		"| `spec.addresses` | []string, required | min items 1; max items 64; each: must be a CIDR",
		"| `spec.autoAssign` | boolean | default true |",
		"| `spec.advertise.bgp.aggregationLength` | integer (int32) | min 0; max 32 |",
		"| `spec.allocation.namespaceSelector` | object |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("reference lacks %q", want)
		}
	}
	if strings.Contains(out, "matchExpressions") {
		t.Error("a label selector's internals are listed")
	}
	// A table cell never breaks the table.
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "| `") && strings.Count(strings.ReplaceAll(line, `\|`, ""), "|") != 5 {
			t.Errorf("row with a stray |: %s", line)
		}
	}
}

func TestHelpNamesTheBinaryNotItsPath(t *testing.T) {
	dir := t.TempDir()
	script := dir + "/ironlb-fake"
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho \"Usage of $0:  \"\necho '  -v int  '\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	got, err := helpOf(script, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got != "Usage of ironlb-fake:\n  -v int" {
		t.Errorf("help %q", got)
	}
}
