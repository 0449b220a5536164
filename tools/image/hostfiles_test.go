package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, p, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o755); err != nil {
		t.Fatal(err)
	}
}

// Symlinks on the way to a file are kept as symlinks (so a path the loader or
// a program uses resolves in the image as on the build machine), and the file
// is copied once where it really is.
func TestHostFilesFollowSymlinks(t *testing.T) {
	root := t.TempDir()
	symlink(t, "usr/lib", root+"/lib")                              // Debian's merged /usr
	symlink(t, "/etc/alternatives/tool", root+"/usr/sbin/tool")     // absolute
	symlink(t, "/usr/sbin/tool-nft", root+"/etc/alternatives/tool") // second hop
	symlink(t, "multi", root+"/usr/sbin/tool-nft")                  // relative
	writeFile(t, root+"/usr/sbin/multi", "#!not elf\n")
	writeFile(t, root+"/usr/lib/x/data", "d")

	set := newLayerSet()
	h, err := newHostFiles(set, root, "amd64")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/usr/sbin/tool", "/lib/x/data", "/lib/x/data"} {
		if err := h.add(p); err != nil {
			t.Fatalf("add %s: %v", p, err)
		}
	}
	want := map[string]string{
		"/lib":                   "-> usr/lib",
		"/usr/sbin/tool":         "-> /etc/alternatives/tool",
		"/etc/alternatives/tool": "-> /usr/sbin/tool-nft",
		"/usr/sbin/tool-nft":     "-> multi",
		"/usr/sbin/multi":        "#!not elf\n",
		"/usr/lib/x/data":        "d",
	}
	if len(set.entries) != len(want) {
		t.Errorf("entries %v, want %v", keys(set.entries), keys(want))
	}
	for p, w := range want {
		e, ok := set.entries[p]
		switch {
		case !ok:
			t.Errorf("no %s", p)
		case strings.HasPrefix(w, "-> "):
			if e.Mode&fs.ModeSymlink == 0 || e.Target != w[3:] {
				t.Errorf("%s: mode %v target %q, want %s", p, e.Mode, e.Target, w)
			}
		case string(e.Data) != w:
			t.Errorf("%s: %q, want %q", p, e.Data, w)
		}
	}

	// Loops and missing files are errors, not hangs or empty layers.
	symlink(t, "/loop/b", root+"/loop/a")
	symlink(t, "/loop/a", root+"/loop/b")
	if err := h.add("/loop/a"); err == nil || !strings.Contains(err.Error(), "too many levels") {
		t.Errorf("symlink loop: %v", err)
	}
	if err := h.add("/usr/sbin/missing"); err == nil {
		t.Error("a missing file was accepted")
	}
	if err := h.add("/usr"); err == nil {
		t.Error("a directory was accepted")
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// On the build machine: iptables-restore reached through Debian's
// alternatives, with the loader and every library xtables-nft-multi needs.
func TestHostFilesELFClosure(t *testing.T) {
	if !haveIPTables() {
		t.Skip("iptables is not installed on this machine (make deps)")
	}
	set := newLayerSet()
	h, err := newHostFiles(set, "", runtime.GOARCH)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.add("/usr/sbin/iptables-restore"); err != nil {
		t.Fatal(err)
	}
	var libs []string
	for p := range set.entries {
		libs = append(libs, filepath.Base(p))
	}
	joined := " " + strings.Join(libs, " ") + " "
	for _, want := range []string{"xtables-nft-multi", "libc.so.6", "libxtables.so.12", "libnftnl.so.11", "libmnl.so.0"} {
		if !strings.Contains(joined, " "+want+" ") {
			t.Errorf("closure of iptables-restore lacks %s: %v", want, libs)
		}
	}
	if !strings.Contains(joined, " ld-linux") {
		t.Errorf("closure lacks the loader: %v", libs)
	}
	if _, err := binaryArch("/usr/sbin/xtables-nft-multi"); err == nil || !strings.Contains(err.Error(), "dynamically linked") {
		t.Errorf("binaryArch accepted a dynamic executable: %v", err)
	}
}
