package main

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// repoRoot is the ironlb checkout this module sits in (tools/image).
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(root, "go.mod")); err != nil || !bytes.Contains(b, []byte("module github.com/ironlb/ironlb\n")) {
		t.Fatalf("%s is not the ironlb checkout: %v", root, err)
	}
	return root
}

// buildBinaries builds every command of the repository the way `make image`
// does (static, -trimpath, stripped) into dir.
func buildBinaries(t *testing.T, dir string) []string {
	t.Helper()
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", dir+"/", "./cmd/...")
	cmd.Dir = repoRoot(t)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return binariesIn(t, dir)
}

func binariesIn(t *testing.T, dir string) []string {
	t.Helper()
	bins, err := filepath.Glob(filepath.Join(dir, "ironlb*"))
	if err != nil || len(bins) < 2 {
		t.Fatalf("binaries in %s: %v %v", dir, bins, err)
	}
	slices.Sort(bins)
	return bins
}

var (
	binsOnce sync.Once
	binsDir  string
	binsErr  string
)

// imageBinaries are the binaries under test: $IRONLB_IMAGE_BIN (what `make
// image` built), else built once for this test run.
func imageBinaries(t *testing.T) []string {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: builds the binaries and images of 100 MB")
	}
	if d := os.Getenv("IRONLB_IMAGE_BIN"); d != "" {
		return binariesIn(t, d)
	}
	binsOnce.Do(func() {
		d, err := os.MkdirTemp("", "ironlb-image-bin-")
		if err != nil {
			binsErr = err.Error()
			return
		}
		binsDir = d
	})
	if binsErr != "" {
		t.Fatal(binsErr)
	}
	if bins, _ := filepath.Glob(filepath.Join(binsDir, "ironlb*")); len(bins) >= 2 {
		return bins
	}
	return buildBinaries(t, binsDir)
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binsDir != "" {
		os.RemoveAll(binsDir)
	}
	os.Exit(code)
}

func haveIPTables() bool {
	_, err := os.Stat("/usr/sbin/xtables-nft-multi")
	return err == nil
}

func buildImage(t *testing.T, bins []string) v1.Image {
	t.Helper()
	img, err := build(spec{
		Binaries:   bins,
		Entrypoint: []string{"/ironlb-controller"},
		IPTables:   haveIPTables(),
		Created:    time.Unix(1700000000, 0),
		Labels:     map[string]string{"org.opencontainers.image.source": "https://github.com/ironlb/ironlb"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

var (
	cachedMu  sync.Mutex
	cachedImg = map[string]v1.Image{}
)

// sharedImage is buildImage for tests that only read the image: built once
// per set of binaries.
func sharedImage(t *testing.T, bins []string) v1.Image {
	t.Helper()
	cachedMu.Lock()
	defer cachedMu.Unlock()
	key := strings.Join(bins, "\x00")
	if img, ok := cachedImg[key]; ok {
		return img
	}
	img := buildImage(t, bins)
	cachedImg[key] = img
	return img
}

func digest(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// Same inputs, same image: twice from the same binaries, and from binaries
// built a second time (Go's builds are reproducible with -trimpath), the digest
// and the archive's bytes are identical.
func TestImageIsReproducible(t *testing.T) {
	bins := imageBinaries(t)
	a, b := buildImage(t, bins), buildImage(t, bins)
	if digest(t, a) != digest(t, b) {
		t.Fatalf("two builds from the same binaries: %v and %v", digest(t, a), digest(t, b))
	}
	dir := t.TempDir()
	ref, _ := name.NewTag("ghcr.io/ironlb/ironlb:test")
	pa, pb := filepath.Join(dir, "a.tar"), filepath.Join(dir, "b.tar")
	if err := writeArchive(pa, a, ref, time.Unix(1700000000, 0)); err != nil {
		t.Fatal(err)
	}
	if err := writeArchive(pb, b, ref, time.Unix(1700000000, 0)); err != nil {
		t.Fatal(err)
	}
	ba, _ := os.ReadFile(pa)
	bb, _ := os.ReadFile(pb)
	if !bytes.Equal(ba, bb) {
		t.Error("the two archives differ")
	}

	rebuilt := buildBinaries(t, t.TempDir())
	if c := buildImage(t, rebuilt); digest(t, c) != digest(t, a) {
		for i := range bins {
			x, _ := os.ReadFile(bins[i])
			y, _ := os.ReadFile(rebuilt[i])
			if !bytes.Equal(x, y) {
				t.Errorf("%s differs when built again", filepath.Base(bins[i]))
			}
		}
		t.Fatalf("image from rebuilt binaries: %v, first: %v", digest(t, c), digest(t, a))
	}

	// A different input gives a different image (the check above can fail).
	other := buildImage(t, bins[:1])
	if digest(t, other) == digest(t, a) {
		t.Error("an image with fewer binaries has the same digest")
	}
}

// The config says who and what runs: user 65532, the controller as default
// command, linux on the binaries' architecture, dated at the given time.
func TestImageConfig(t *testing.T) {
	img := sharedImage(t, imageBinaries(t))
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Config.User != "65532:65532" {
		t.Errorf("user %q, want 65532:65532", cf.Config.User)
	}
	if !slices.Equal(cf.Config.Entrypoint, []string{"/ironlb-controller"}) || len(cf.Config.Cmd) != 0 {
		t.Errorf("entrypoint %q cmd %q", cf.Config.Entrypoint, cf.Config.Cmd)
	}
	if cf.OS != "linux" || cf.Architecture != "amd64" && cf.Architecture != "arm64" {
		t.Errorf("platform %s/%s", cf.OS, cf.Architecture)
	}
	if !cf.Created.Equal(time.Unix(1700000000, 0)) {
		t.Errorf("created %v", cf.Created)
	}
	if !slices.Contains(cf.Config.Env, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin") {
		t.Errorf("env %v has no PATH to iptables", cf.Config.Env)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.MediaType != "application/vnd.oci.image.manifest.v1+json" || m.Config.MediaType != "application/vnd.oci.image.config.v1+json" {
		t.Errorf("media types %s, %s", m.MediaType, m.Config.MediaType)
	}
	// Only /home/nonroot belongs to the non-root user: it cannot change any
	// binary or library of the image.
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	seen := map[string]bool{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		seen[strings.TrimSuffix(h.Name, "/")] = true
		if (h.Uid != 0 || h.Gid != 0) && strings.TrimSuffix(h.Name, "/") != "home/nonroot" {
			t.Errorf("%s owned by %d:%d", h.Name, h.Uid, h.Gid)
		}
		if h.Mode&0o022 != 0 && h.Typeflag == tar.TypeReg {
			t.Errorf("%s is writable by group or others (%o)", h.Name, h.Mode)
		}
	}
	for _, p := range []string{"ironlb-controller", "ironlb-ingress", "etc/passwd", "tmp"} {
		if !seen[p] {
			t.Errorf("image has no %s", p)
		}
	}
}

// extract unpacks the image's file system into a new folder.
func extract(t *testing.T, img v1.Image) string {
	t.Helper()
	dir := t.TempDir()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return dir
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, h.Name)
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(p, os.FileMode(h.Mode)&os.ModePerm)
		case tar.TypeSymlink:
			err = os.Symlink(h.Linkname, p)
		case tar.TypeReg:
			var f *os.File
			f, err = os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_EXCL, os.FileMode(h.Mode)&os.ModePerm)
			if err == nil {
				_, err = io.Copy(f, tr)
				f.Close()
			}
		}
		if err == nil && h.Typeflag != tar.TypeSymlink {
			err = os.Lchown(p, h.Uid, h.Gid)
			if err == nil {
				err = os.Chmod(p, os.FileMode(h.Mode)&os.ModePerm|modeSticky(h.Mode))
			}
		}
		if err != nil {
			t.Fatalf("extracting %s: %v", h.Name, err)
		}
	}
}

func modeSticky(m int64) os.FileMode {
	if m&0o1000 != 0 {
		return os.ModeSticky
	}
	return 0
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (chroot into the image's file system, network namespaces)")
	}
}

// inImage runs argv inside the image's file system (chroot) as uid:gid, with
// the image's PATH, in a network namespace of its own (gone when it exits).
func inImage(t *testing.T, rootfs string, uid, gid uint32, stdin string, argv ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	cmd.Dir = "/"
	cmd.Stdin = strings.NewReader(stdin)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Chroot:     rootfs,
		Credential: &syscall.Credential{Uid: uid, Gid: gid},
		Cloneflags: syscall.CLONE_NEWNET,
		Pdeathsig:  syscall.SIGKILL,
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Every binary in the image runs in it, as the non-root user, with nothing
// else of the build machine around it.
func TestBinariesRunInImage(t *testing.T) {
	needRoot(t)
	bins := imageBinaries(t)
	rootfs := extract(t, sharedImage(t, bins))
	for _, b := range bins {
		name := filepath.Base(b)
		t.Run(name, func(t *testing.T) {
			out, err := inImage(t, rootfs, NonRootUID, NonRootUID, "", "/"+name, "--help")
			if err != nil {
				t.Fatalf("/%s --help in the image: %v\n%s", name, err, out)
			}
			if !strings.Contains(strings.ToLower(out), "usage") {
				t.Errorf("/%s --help printed no usage:\n%s", name, out)
			}
		})
	}
	// The negative case: a program the image does not have.
	if out, err := inImage(t, rootfs, NonRootUID, NonRootUID, "", "/bin/sh", "-c", "true"); err == nil {
		t.Errorf("/bin/sh ran in the image: %s", out)
	}
}

// The speaker's proxy runs iptables-restore and iptables-save from the image:
// the nf_tables backend with the extensions ironlb's rules use loads and
// programs rules (in a network namespace of its own), for both families.
func TestIPTablesRunsInImage(t *testing.T) {
	needRoot(t)
	if !haveIPTables() {
		t.Skip("iptables is not installed on this machine (make deps)")
	}
	rootfs := extract(t, sharedImage(t, imageBinaries(t)))
	rules := `*nat
:IRONLB-SERVICES - [0:0]
:IRONLB-SVC-TEST - [0:0]
-A IRONLB-SERVICES -d %[1]s -p tcp -m comment --comment "ns/svc:http" -m tcp --dport 80 -j IRONLB-SVC-TEST
-A IRONLB-SVC-TEST -p tcp -m statistic --mode random --probability 0.5000000000 -j DNAT --to-destination %[2]s
-A IRONLB-SVC-TEST -m mark --mark 0x4000/0x4000 -j MASQUERADE --random-fully
-A IRONLB-SVC-TEST -p tcp -j DNAT --to-destination %[2]s
COMMIT
*filter
:IRONLB-FIREWALL - [0:0]
-A IRONLB-FIREWALL -m conntrack --ctstate INVALID -j DROP
-A IRONLB-FIREWALL -p tcp -m recent --name test --rcheck --seconds 10800 --reap -j ACCEPT
-A IRONLB-FIREWALL -m addrtype --dst-type LOCAL -j REJECT
COMMIT
`
	for _, fam := range []struct{ cmd, vip, ep string }{
		{"iptables", "198.51.100.10/32", "198.18.1.10:80"},
		{"ip6tables", "2001:db8:1::10/128", "[2001:db8:18:1::10]:80"},
	} {
		t.Run(fam.cmd, func(t *testing.T) {
			ns := netns(t)
			script := fmt.Sprintf(rules, fam.vip, fam.ep)
			if out, err := inNetnsImage(t, ns, rootfs, script, "/usr/sbin/"+fam.cmd+"-restore", "--noflush"); err != nil {
				t.Fatalf("%s-restore in the image: %v\n%s", fam.cmd, err, out)
			}
			out, err := inNetnsImage(t, ns, rootfs, "", "/usr/sbin/"+fam.cmd+"-save")
			if err != nil {
				t.Fatalf("%s-save in the image: %v\n%s", fam.cmd, err, out)
			}
			for _, want := range []string{"-j IRONLB-SVC-TEST", "--probability 0.5", "--to-destination " + fam.ep, "--random-fully", "-m recent", "--dst-type LOCAL"} {
				if !strings.Contains(out, want) {
					t.Errorf("%s-save shows no %q:\n%s", fam.cmd, want, out)
				}
			}
			// A rule with an extension the image lacks fails: the check above
			// can fail.
			bad := "*filter\n-A INPUT -m nosuchmatch -j ACCEPT\nCOMMIT\n"
			if out, err := inNetnsImage(t, ns, rootfs, bad, "/usr/sbin/"+fam.cmd+"-restore", "--noflush"); err == nil {
				t.Errorf("%s-restore accepted an unknown match: %s", fam.cmd, out)
			}
		})
	}
}

// netns makes a network namespace for one test (named ilb<id>-image, so that
// `make lab-clean` finds a leftover) and removes it at the end.
func netns(t *testing.T) string {
	t.Helper()
	ns := fmt.Sprintf("ilb%04x-image", rand.Uint32()&0xffff)
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v %s", ns, err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	return ns
}

// inNetnsImage runs argv as root inside the image's file system in network
// namespace ns.
func inNetnsImage(t *testing.T, ns, rootfs, stdin string, argv ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns, "chroot", rootfs}, argv...)...)
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	cmd.Stdin = strings.NewReader(stdin)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// The archive is what tools read back: docker-style (manifest.json) and OCI
// layout (index.json) both lead to the same image.
func TestArchiveReadsBack(t *testing.T) {
	img := sharedImage(t, imageBinaries(t))
	want := digest(t, img)
	dir := t.TempDir()
	ref, _ := name.NewTag("registry.example/ironlb/ironlb:v1")
	p := filepath.Join(dir, "ironlb.tar")
	if err := writeArchive(p, img, ref, time.Unix(0, 0)); err != nil {
		t.Fatal(err)
	}
	got, err := tarball.ImageFromPath(p, &ref)
	if err != nil {
		t.Fatal(err)
	}
	if d := digest(t, got); d != want {
		// tarball re-encodes the manifest; compare what matters.
		gl, _ := got.Layers()
		wl, _ := img.Layers()
		if len(gl) != len(wl) {
			t.Fatalf("docker archive: %d layers, want %d", len(gl), len(wl))
		}
		for i := range gl {
			a, _ := gl[i].Digest()
			b, _ := wl[i].Digest()
			if a != b {
				t.Errorf("docker archive layer %d: %v, want %v", i, a, b)
			}
		}
	}

	// As an OCI layout (untarred).
	ldir := filepath.Join(dir, "layout")
	if out, err := exec.Command("tar", "-xf", p, "-C", dir, "--one-top-level=layout").CombinedOutput(); err != nil {
		t.Fatalf("untar: %v %s", err, out)
	}
	lp, err := layout.FromPath(ldir)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := lp.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 || im.Manifests[0].Digest != want || im.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != "v1" {
		t.Fatalf("index.json: %+v", im.Manifests)
	}
	limg, err := idx.Image(want)
	if err != nil {
		t.Fatal(err)
	}
	if err := validateLayers(limg); err != nil {
		t.Fatal(err)
	}
}

// validateLayers reads every layer of img back and checks it against its digest.
func validateLayers(img v1.Image) error {
	ls, err := img.Layers()
	if err != nil {
		return err
	}
	for _, l := range ls {
		d, err := l.Digest()
		if err != nil {
			return err
		}
		rc, err := l.Compressed()
		if err != nil {
			return err
		}
		h, _, err := v1.SHA256(rc)
		rc.Close()
		if err != nil {
			return err
		}
		if h != d {
			return fmt.Errorf("layer %v reads back as %v", d, h)
		}
	}
	return nil
}

// --push uploads to a registry (here one in memory); pulling gives the same digest.
func TestPush(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	bins := imageBinaries(t)
	host := strings.TrimPrefix(srv.URL, "http://")
	dir := t.TempDir()
	args := []string{"--tag", host + "/ironlb/ironlb:test", "--out", filepath.Join(dir, "i.tar"), "--push", "--epoch", "1700000000", "--label", "org.opencontainers.image.source=https://github.com/ironlb/ironlb"}
	if haveIPTables() {
		args = append(args, "--iptables")
	}
	if err := run(append(args, bins...)); err != nil {
		t.Fatal(err)
	}
	ref, _ := name.NewTag(host + "/ironlb/ironlb:test")
	pulled, err := remote.Image(ref)
	if err != nil {
		t.Fatal(err)
	}
	if digest(t, pulled) != digest(t, sharedImage(t, bins)) {
		t.Errorf("pushed image has digest %v, a local build %v", digest(t, pulled), digest(t, sharedImage(t, bins)))
	}
}
