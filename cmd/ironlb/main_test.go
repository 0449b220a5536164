package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runCLI(t *testing.T, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	root := newRoot()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetIn(strings.NewReader(stdin))
	root.SetArgs(args)
	err = root.ExecuteContext(context.Background())
	return out.String(), errOut.String(), err
}

// A directory of MetalLB files becomes ironlb objects on stdout and a report on
// stderr; --strict turns settings without an equivalent into a failure.
func TestMigrateDirectory(t *testing.T) {
	dir := "../../migrate/testdata/metallb"
	out, report, err := runCLI(t, "", "migrate-metallb", "-f", dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"kind: IPPool\nmetadata:", "name: leaf1", "kind: Secret"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if !strings.Contains(report, "dropped BGPPeer metallb-system/spine spec.routerID") ||
		!strings.Contains(report, "skipped v1 Service default/web") {
		t.Errorf("report:\n%s", report)
	}
	if _, _, err := runCLI(t, "", "migrate-metallb", "-f", dir, "--strict"); err == nil {
		t.Error("--strict passed although settings were dropped")
	}
	if _, _, err := runCLI(t, "", "migrate-metallb", "-f", filepath.Join(dir, "l2.yaml"), "--strict"); err != nil {
		t.Errorf("--strict failed on a fully translatable file: %v", err)
	}
}

func TestMigrateStdinAndOutputFile(t *testing.T) {
	in, err := os.ReadFile("../../migrate/testdata/metallb/l2.yaml")
	if err != nil {
		t.Fatal(err)
	}
	outFile := filepath.Join(t.TempDir(), "ironlb.yaml")
	stdout, _, err := runCLI(t, string(in), "migrate-metallb", "-f", "-", "-o", outFile)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(outFile)
	if stdout != "" || !strings.Contains(string(b), "name: lan") {
		t.Errorf("stdout %q, file %q", stdout, b)
	}
	if _, _, err := runCLI(t, "not: [valid", "migrate-metallb", "-f", "-"); err == nil {
		t.Error("bad YAML on stdin accepted")
	}
}
