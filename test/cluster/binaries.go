package cluster

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// Binaries are the paths of the executables a lab cluster runs.
type Binaries struct {
	APIServer string // kube-apiserver
	Etcd      string // test/tools/etcd
	PodServer string // test/tools/podserver
	// KubeProxy is kube-proxy from the same k8s.io/kubernetes version as the API
	// server, for suites that run the stock data path on the lab's nodes.
	KubeProxy string
}

const testModulePath = "github.com/ironlb/ironlb/test"

// EnsureBinaries returns kube-apiserver, kube-proxy, etcd and podserver built from the test
// module's pinned versions, building whatever is missing from the cache
// ${IRONLB_CACHE:-<user cache dir>/ironlb}/bin/k8s-<kubernetes version>/.
// Binaries are built into a temporary folder and renamed into place, so an
// interrupted build leaves nothing half-written; concurrent callers (parallel test
// binaries) wait on a lock file instead of building twice. Progress and a heartbeat
// every 30 s go to progress (nil: discarded).
func EnsureBinaries(ctx context.Context, progress io.Writer) (Binaries, error) {
	if progress == nil {
		progress = io.Discard
	}
	modDir, err := TestModuleDir()
	if err != nil {
		return Binaries{}, err
	}
	gomod, err := os.ReadFile(filepath.Join(modDir, "go.mod"))
	if err != nil {
		return Binaries{}, err
	}
	k8sVersion := requiredVersion(gomod, "k8s.io/kubernetes")
	etcdVersion := requiredVersion(gomod, "go.etcd.io/etcd/server/v3")
	if k8sVersion == "" || etcdVersion == "" {
		return Binaries{}, fmt.Errorf("%s/go.mod does not require k8s.io/kubernetes and go.etcd.io/etcd/server/v3", modDir)
	}
	etcdHash, err := hashFiles(filepath.Join(modDir, "tools", "etcd"))
	if err != nil {
		return Binaries{}, err
	}
	podHash, err := hashFiles(filepath.Join(modDir, "tools", "podserver"))
	if err != nil {
		return Binaries{}, err
	}

	dir := filepath.Join(cacheDir(), "bin", "k8s-"+k8sVersion)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Binaries{}, err
	}
	bins := Binaries{
		APIServer: filepath.Join(dir, "kube-apiserver"),
		KubeProxy: filepath.Join(dir, "kube-proxy"),
		Etcd:      filepath.Join(dir, "etcd-"+etcdVersion+"-"+etcdHash),
		PodServer: filepath.Join(dir, "podserver-"+podHash),
	}
	type target struct {
		pkg, out, final, desc string
	}
	all := []target{
		{"./tools/etcd", "etcd", bins.Etcd, "etcd " + etcdVersion},
		{"./tools/podserver", "podserver", bins.PodServer, "podserver"},
		{"k8s.io/kubernetes/cmd/kube-apiserver", "kube-apiserver", bins.APIServer, "kube-apiserver " + k8sVersion + " (first run only, 5-10 min)"},
		{"k8s.io/kubernetes/cmd/kube-proxy", "kube-proxy", bins.KubeProxy, "kube-proxy " + k8sVersion},
	}
	missing := func() []target {
		var m []target
		for _, t := range all {
			if !isExecutable(t.final) {
				m = append(m, t)
			}
		}
		return m
	}
	if len(missing()) == 0 {
		return bins, nil
	}

	unlock, err := lockFile(ctx, filepath.Join(dir, ".lock"), progress)
	if err != nil {
		return Binaries{}, err
	}
	defer unlock()
	todo := missing() // another process may have built them meanwhile
	if len(todo) == 0 {
		return bins, nil
	}

	tmp, err := os.MkdirTemp(dir, ".build-")
	if err != nil {
		return Binaries{}, err
	}
	defer os.RemoveAll(tmp)

	args := []string{"build", "-o", tmp + string(filepath.Separator)}
	var descs []string
	for _, t := range todo {
		args = append(args, t.pkg)
		descs = append(descs, t.desc)
	}
	fmt.Fprintf(progress, "building %s into %s...\n", strings.Join(descs, ", "), dir)
	start := time.Now()
	done := make(chan struct{})
	go func() {
		tick := time.NewTicker(30 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				fmt.Fprintf(progress, "  still building (%s elapsed)...\n", time.Since(start).Round(time.Second))
			}
		}
	}()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = modDir
	cmd.Stdout = io.MultiWriter(&out, progress)
	cmd.Stderr = io.MultiWriter(&out, progress)
	err = cmd.Run()
	close(done)
	if err != nil {
		return Binaries{}, fmt.Errorf("go %s (in %s): %w\n%s", strings.Join(args, " "), modDir, err, out.String())
	}
	for _, t := range todo {
		if err := os.Rename(filepath.Join(tmp, t.out), t.final); err != nil {
			return Binaries{}, err
		}
	}
	fmt.Fprintf(progress, "built in %s\n", time.Since(start).Round(time.Second))
	removeStale(dir, "etcd-", bins.Etcd)
	removeStale(dir, "podserver-", bins.PodServer)
	return bins, nil
}

// TestModuleDir returns the directory of the github.com/ironlb/ironlb/test module:
// $IRONLB_TEST_MODULE_DIR, else the module holding this source file, else what
// `go list -m` says in the current directory.
func TestModuleDir() (string, error) {
	var candidates []string
	if d := os.Getenv("IRONLB_TEST_MODULE_DIR"); d != "" {
		candidates = append(candidates, d)
	}
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		candidates = append(candidates, filepath.Dir(filepath.Dir(file)))
	}
	if out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", testModulePath).Output(); err == nil {
		candidates = append(candidates, strings.TrimSpace(string(out)))
	}
	for _, d := range candidates {
		b, err := os.ReadFile(filepath.Join(d, "go.mod"))
		if err == nil && regexp.MustCompile(`(?m)^module\s+`+regexp.QuoteMeta(testModulePath)+`\s*$`).Match(b) {
			return d, nil
		}
	}
	return "", fmt.Errorf("cannot find the %s module (tried %q); set IRONLB_TEST_MODULE_DIR", testModulePath, candidates)
}

func cacheDir() string {
	if d := os.Getenv("IRONLB_CACHE"); d != "" {
		return d
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "ironlb")
	}
	return filepath.Join(os.TempDir(), "ironlb-cache")
}

// requiredVersion finds the version of module mod in a go.mod's require lines.
func requiredVersion(gomod []byte, mod string) string {
	re := regexp.MustCompile(`(?m)^\s*(?:require\s+)?` + regexp.QuoteMeta(mod) + `\s+(v\S+)`)
	if m := re.FindSubmatch(gomod); m != nil {
		return string(m[1])
	}
	return ""
}

// hashFiles returns a short hash of the .go files of a folder, so a tool's
// cached binary is rebuilt when its source changes.
func hashFiles(dir string) (string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		return "", err
	}
	if len(files) == 0 {
		return "", fmt.Errorf("no Go files in %s", dir)
	}
	h := sha256.New()
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s %d\n", filepath.Base(f), len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:12], nil
}

func isExecutable(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}

func removeStale(dir, prefix, keep string) {
	matches, _ := filepath.Glob(filepath.Join(dir, prefix+"*"))
	for _, m := range matches {
		if m != keep {
			os.Remove(m)
		}
	}
}

// lockFile takes an exclusive flock on path, polling so ctx can cancel the wait.
func lockFile(ctx context.Context, path string, progress io.Writer) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	said := false
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				f.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("locking %s: %w", path, err)
		}
		if !said {
			fmt.Fprintf(progress, "waiting for another process building into %s...\n", filepath.Dir(path))
			said = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}
