package framework

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/ironlb/ironlb/test/cluster"
	"github.com/ironlb/ironlb/test/lab"
)

// StartBareControlPlane runs a further control plane in the cp namespace with
// nothing of ironlb installed (no CRDs, namespace or RBAC), for tests that
// install ironlb the way users do. It is stopped by Down, or earlier by the
// caller.
func (e *Env) StartBareControlPlane(ctx context.Context, name string, port int) (*cluster.Cluster, error) {
	c, err := e.startControlPlane(ctx, name, port, false, true)
	if err == nil {
		e.extra = append(e.extra, c)
	}
	return c, err
}

var binMu sync.Mutex

// Binary finds an ironlb binary (ironlb-controller, ironlb, ...):
// $IRONLB_BIN/<name> if it exists, else it is built from the repository into
// the folder that ControllerBinary uses.
func (e *Env) Binary(ctx context.Context, name string) (string, error) {
	if dir := os.Getenv("IRONLB_BIN"); dir != "" {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	binMu.Lock()
	defer binMu.Unlock()
	out := filepath.Join(os.TempDir(), "ironlb-e2e-bin")
	p := filepath.Join(out, name)
	if _, err := os.Stat(filepath.Join(e.RepoRoot, "cmd", name)); err != nil {
		return "", fmt.Errorf("no binary %s: not in $IRONLB_BIN and no cmd/%s to build", name, name)
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out+"/", "./cmd/"+name)
	cmd.Dir = e.RepoRoot
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building %s: %v\n%s", name, err, b)
	}
	return p, nil
}

// ContainerRun says how to run one container of a rendered Pod spec in the lab.
type ContainerRun struct {
	// Cluster is the control plane whose ServiceAccount token the process
	// gets (that of the Pod spec, in Namespace): its RBAC is exactly what the
	// applied manifests bind.
	Cluster   *cluster.Cluster
	Namespace string
	Pod       *corev1.PodSpec
	// Container is the name of a container or init container of Pod.
	Container string
	// Host is the lab host (network namespace) to run in; default cp. A Pod's
	// sysctls are set in it first, as the kubelet sets them in the Pod's.
	Host string
	// NodeName and HostIP are what spec.nodeName and status.hostIP (and, for
	// host-network Pods, status.podIP) env references resolve to.
	NodeName, HostIP string
	// KubeconfigFlags name the flags that get the token's kubeconfig (where a
	// Pod would use its mounted token), e.g. "--kubeconfig".
	KubeconfigFlags []string
	// Server replaces the kubeconfig's server URL (a host that reaches the API
	// server at another address than the test process).
	Server string
	// Args are appended to the container's args (the lab's ports: later flags win).
	Args []string
	// Mutate, when set, edits a copy of the container before it runs (tests
	// that prove a missing permission fails).
	Mutate func(*corev1.Container)
}

// ContainerProcess is a container running as a lab process.
type ContainerProcess struct {
	*lab.Process
	// Want is what the manifest asks the process to run as.
	Want Identity
	// Binary is the host path of the program.
	Binary string
	dir    string
}

// RunContainer starts a container of a rendered Pod spec the way a node would:
// its command and args (with $(VAR) expanded from its env), its environment
// only, the user, groups and capabilities of its securityContext (through
// setpriv, see ContainerIdentity), the Pod's namespaced sysctls, and the
// Pod's ServiceAccount token, its Secret volumes (files in a folder that
// replaces the mount path in the args). Binaries come from the image's paths
// (/name -> Binary(name)). What is not reproduced: the read-only root file
// system, the seccomp profile, resource limits, probes, other volume types,
// and for Pods without hostNetwork, a network namespace of their own when Host
// is cp.
func (e *Env) RunContainer(ctx context.Context, r ContainerRun) (_ *ContainerProcess, err error) {
	if r.Host == "" {
		r.Host = lab.HostCP
	}
	var c *corev1.Container
	for _, list := range [][]corev1.Container{r.Pod.InitContainers, r.Pod.Containers} {
		for i := range list {
			if list[i].Name == r.Container {
				c = list[i].DeepCopy()
			}
		}
	}
	if c == nil {
		return nil, fmt.Errorf("no container %q in the Pod spec", r.Container)
	}
	if r.Mutate != nil {
		r.Mutate(c)
	}
	id, err := ContainerIdentity(r.Pod, c)
	if err != nil {
		return nil, err
	}
	if len(c.Command) == 0 || !strings.HasPrefix(c.Command[0], "/") {
		return nil, fmt.Errorf("container %s: command %q is not an absolute path in the image", c.Name, c.Command)
	}
	bin, err := e.Binary(ctx, filepath.Base(c.Command[0]))
	if err != nil {
		return nil, err
	}
	env, err := containerEnv(c, r)
	if err != nil {
		return nil, err
	}
	if r.Pod.SecurityContext != nil {
		for _, s := range r.Pod.SecurityContext.Sysctls {
			if _, err := e.Lab.Exec(ctx, r.Host, "sysctl", "-q", "-w", s.Name+"="+s.Value); err != nil {
				return nil, fmt.Errorf("pod sysctl %s: %w", s.Name, err)
			}
		}
	}

	// The token, readable by the container's user only.
	dir, err := os.MkdirTemp("", "ilb-pod-")
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	if err := os.Chmod(dir, 0o711); err != nil {
		return nil, err
	}
	var extra []string
	if len(r.KubeconfigFlags) > 0 {
		if r.Pod.ServiceAccountName == "" {
			return nil, errors.New("the Pod spec names no ServiceAccount")
		}
		kc, err := r.Cluster.ServiceAccountKubeconfig(ctx, r.Namespace, r.Pod.ServiceAccountName, 2*time.Hour)
		if err != nil {
			return nil, err
		}
		cfg, err := clientcmd.LoadFromFile(kc)
		if err != nil {
			return nil, err
		}
		if r.Server != "" {
			for _, cl := range cfg.Clusters {
				cl.Server = r.Server
			}
		}
		path := filepath.Join(dir, "kubeconfig")
		if err := clientcmd.WriteToFile(*cfg, path); err != nil {
			return nil, err
		}
		if err := os.Chown(path, int(id.UID), int(id.GID)); err != nil {
			return nil, err
		}
		if err := os.Chmod(path, 0o400); err != nil {
			return nil, err
		}
		for _, f := range r.KubeconfigFlags {
			extra = append(extra, f+"="+path)
		}
	}

	mounts, err := secretMounts(ctx, r, c, dir, id)
	if err != nil {
		return nil, err
	}

	argv := append(SetprivArgs(id), "env", "-i")
	argv = append(argv, env...)
	argv = append(argv, bin)
	for _, a := range append(slices.Clone(c.Command[1:]), c.Args...) {
		argv = append(argv, mounts.Replace(expandVars(a, env)))
	}
	argv = append(argv, extra...)
	argv = append(argv, r.Args...)
	logPath := filepath.Join(e.Lab.Dir(), fmt.Sprintf("container-%s-%s-%d.log", r.Host, c.Name, time.Now().UnixNano()))
	p, err := e.Lab.Start(r.Host, logPath, argv...)
	if err != nil {
		return nil, err
	}
	e.track(p.Pid())
	cp := &ContainerProcess{Process: p, Want: id, Binary: bin, dir: dir}
	go func() { <-p.Done(); os.RemoveAll(dir) }()
	return cp, nil
}

// containerEnv is the container's environment as "K=V": the image's PATH,
// then its env (literal values and the fieldRefs a node fills in).
func containerEnv(c *corev1.Container, r ContainerRun) ([]string, error) {
	env := []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	for _, v := range c.Env {
		val := v.Value
		if v.ValueFrom != nil {
			if v.ValueFrom.FieldRef == nil {
				return nil, fmt.Errorf("container %s: env %s: only values and fieldRefs are supported", c.Name, v.Name)
			}
			switch v.ValueFrom.FieldRef.FieldPath {
			case "spec.nodeName":
				val = r.NodeName
			case "metadata.namespace":
				val = r.Namespace
			case "status.hostIP":
				val = r.HostIP
			case "status.podIP":
				if !r.Pod.HostNetwork {
					return nil, fmt.Errorf("container %s: env %s: status.podIP of a Pod without hostNetwork is not supported by the lab", c.Name, v.Name)
				}
				val = r.HostIP
			default:
				return nil, fmt.Errorf("container %s: env %s: fieldRef %s is not supported by the lab", c.Name, v.Name, v.ValueFrom.FieldRef.FieldPath)
			}
		}
		env = append(env, v.Name+"="+expandVars(val, env))
	}
	return env, nil
}

var varRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// expandVars replaces $(NAME) by NAME's value in env, as the kubelet does in
// command, args and env; unknown references stay as they are.
func expandVars(s string, env []string) string {
	return varRef.ReplaceAllStringFunc(s, func(ref string) string {
		name := ref[2 : len(ref)-1]
		for i := len(env) - 1; i >= 0; i-- {
			if k, v, _ := strings.Cut(env[i], "="); k == name {
				return v
			}
		}
		return ref
	})
}

// Identity waits (up to 10s) until the process runs its program (setpriv and
// env have exec'd) and returns what it runs as.
func (p *ContainerProcess) Identity(ctx context.Context) (Identity, error) {
	want, err := filepath.EvalSymlinks(p.Binary)
	if err != nil {
		return Identity{}, err
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", p.Pid()))
		if err == nil && exe == want {
			return ProcessIdentity(p.Pid())
		}
		select {
		case <-p.Done():
			return Identity{}, fmt.Errorf("%s exited: %v; log: %s", p.Binary, p.Err(), p.Tail(2000))
		case <-ctx.Done():
			return Identity{}, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return Identity{}, fmt.Errorf("pid %d did not exec %s within 10s (exe %q)", p.Pid(), want, exe)
		}
	}
}

// RunToCompletion runs an init container (see RunContainer) and returns its
// output once it exited; an exit status other than 0 is an error.
func (e *Env) RunToCompletion(ctx context.Context, r ContainerRun) (string, error) {
	p, err := e.RunContainer(ctx, r)
	if err != nil {
		return "", err
	}
	select {
	case <-p.Done():
	case <-ctx.Done():
		_ = p.Stop()
		return p.Tail(4000), ctx.Err()
	case <-time.After(2 * time.Minute):
		_ = p.Stop()
		return p.Tail(4000), fmt.Errorf("init container %s did not finish within 2m", r.Container)
	}
	out := p.Tail(8000)
	if err := p.Err(); err != nil {
		return out, fmt.Errorf("init container %s: %w: %s", r.Container, err, out)
	}
	return out, nil
}

// secretMounts writes the Secret volumes that c mounts (as the kubelet would:
// one file per key, the volume's defaultMode, owned by the container's user)
// under dir, and returns a replacer from each mount path to its folder: a
// process reads the files at the folder, where its container would read them
// at the mount path. Other volume types are refused.
func secretMounts(ctx context.Context, r ContainerRun, c *corev1.Container, dir string, id Identity) (*strings.Replacer, error) {
	var pairs []string
	for _, m := range c.VolumeMounts {
		var vol *corev1.Volume
		for i := range r.Pod.Volumes {
			if r.Pod.Volumes[i].Name == m.Name {
				vol = &r.Pod.Volumes[i]
			}
		}
		if vol == nil || vol.Secret == nil {
			return nil, fmt.Errorf("container %s mounts volume %s: only Secret volumes are supported by the lab", c.Name, m.Name)
		}
		sec, err := r.Cluster.Client.CoreV1().Secrets(r.Namespace).Get(ctx, vol.Secret.SecretName, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("volume %s: Secret %s/%s: %w (the kubelet would wait for it)", m.Name, r.Namespace, vol.Secret.SecretName, err)
		}
		folder := filepath.Join(dir, "volume-"+m.Name)
		if err := os.Mkdir(folder, 0o755); err != nil {
			return nil, err
		}
		mode := os.FileMode(0o644)
		if vol.Secret.DefaultMode != nil {
			mode = os.FileMode(*vol.Secret.DefaultMode)
		}
		for k, v := range sec.Data {
			p := filepath.Join(folder, k)
			if err := os.WriteFile(p, v, mode); err != nil {
				return nil, err
			}
			if err := os.Chown(p, int(id.UID), int(id.GID)); err != nil {
				return nil, err
			}
		}
		pairs = append(pairs, strings.TrimSuffix(m.MountPath, "/"), folder)
	}
	return strings.NewReplacer(pairs...), nil
}
