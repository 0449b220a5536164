// Package framework puts the lab and the control plane together: a network-namespace
// data centre (package lab) with a real kube-apiserver + etcd in its cp namespace
// (package cluster), ironlb's CRDs and RBAC from deploy/, Node objects for the lab's
// nodes, backends ("pods") with their EndpointSlices, and ironlb-controller processes
// running as the ServiceAccount of deploy/ (so its RBAC is exactly what ships).
//
// The e2e suites and `make demo` both build on it.
package framework

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/ironlb/ironlb/test/cluster"
	"github.com/ironlb/ironlb/test/lab"
)

// Options shape an environment.
type Options struct {
	Nodes  int  // default 3
	IPv6   bool // IPv6 addresses too
	Router bool // router + client (BGP path)
	// SingleStack keeps the cluster's Services IPv4-only even with IPv6 lab
	// addresses (by default an IPv6 lab has dual-stack Services: ClusterIPs from
	// 198.19.0.0/16 and 2001:db8:ffff::/112).
	SingleStack bool
	// Audit logs every API request's metadata (cluster.Config.Audit).
	Audit bool
	// Profiling serves the API server's /debug/pprof (cluster.Config.Profiling).
	Profiling bool
	Log       io.Writer
}

// Env is a running lab with a control plane.
type Env struct {
	Lab      *lab.Lab
	Cluster  *cluster.Cluster
	Bins     cluster.Binaries
	RepoRoot string
	// Controller is the path of the ironlb-controller binary.
	Controller string
	log        io.Writer
	ctrlCount  int
	pidsMu     sync.Mutex         // speakers start concurrently (StartSpeakers, tests)
	pids       []int              // processes started through the Env (besides the control plane); pidsMu
	extra      []*cluster.Cluster // further control planes (StartControlPlane)
	speaker    speakerState       // shared by the speakers and kube-proxies (speaker.go)
	audit      bool               // Options.Audit
	profiling  bool               // Options.Profiling
}

// PIDs are the processes this Env started: the control plane, controllers and
// backends. After Down none of them may exist.
func (e *Env) PIDs() []int {
	var pids []int
	for _, c := range append([]*cluster.Cluster{e.Cluster}, e.extra...) {
		if c != nil {
			pids = append(pids, c.PIDs()...)
		}
	}
	e.pidsMu.Lock()
	defer e.pidsMu.Unlock()
	return append(pids, e.pids...)
}

// track records a process the Env started, for PIDs.
func (e *Env) track(pid int) {
	e.pidsMu.Lock()
	defer e.pidsMu.Unlock()
	e.pids = append(e.pids, pid)
}

// Leftovers lists what of this Env still exists after Down: network namespaces and
// root-namespace links with the lab's prefix, and processes it started ("" when
// nothing is left).
func (e *Env) Leftovers(pids []int) string {
	prefix := e.Lab.Prefix()
	var left []string
	out, _ := exec.Command("ip", "netns", "list").Output()
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, prefix+"-") {
			left = append(left, "namespace "+strings.Fields(line)[0])
		}
	}
	out, _ = exec.Command("ip", "-o", "link", "show").Output()
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 1 && strings.HasPrefix(strings.TrimSuffix(f[1], ":"), prefix) {
			left = append(left, "link "+f[1])
		}
	}
	for _, pid := range pids {
		if syscall.Kill(pid, 0) == nil {
			left = append(left, fmt.Sprintf("process %d", pid))
		}
	}
	return strings.Join(left, ", ")
}

// CheckHost returns an error that says exactly what is missing when this machine
// cannot run the lab (not Linux, not root, no ip command).
func CheckHost() error {
	if runtime.GOOS != "linux" {
		return fmt.Errorf("the lab needs Linux network namespaces (this is %s)", runtime.GOOS)
	}
	if os.Geteuid() != 0 {
		return errors.New("the lab needs root: it creates network namespaces, veths and bridges (run as root, e.g. sudo make ...)")
	}
	var missing []string
	for _, tool := range []string{"ip", "iptables", "curl", "arping", "vtysh"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing commands %v: run `make deps` as root (installs iproute2 iptables frr bird2 arping curl tcpdump iputils-ping procps)", missing)
	}
	return nil
}

// RepoRoot is the repository root (the folder above the test module).
func RepoRoot() (string, error) {
	dir, err := cluster.TestModuleDir()
	if err != nil {
		return "", err
	}
	return filepath.Dir(dir), nil
}

// ControllerBinary finds ironlb-controller: $IRONLB_BIN/ironlb-controller if set, else
// it is built into the lab's cache with `go build` from the repository.
func ControllerBinary(ctx context.Context, root string, log io.Writer) (string, error) {
	if dir := os.Getenv("IRONLB_BIN"); dir != "" {
		p := filepath.Join(dir, "ironlb-controller")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	out := filepath.Join(os.TempDir(), "ironlb-e2e-bin")
	fmt.Fprintln(log, "building ironlb-controller ...")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out+"/", "./cmd/ironlb-controller")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building ironlb-controller: %v\n%s", err, b)
	}
	return filepath.Join(out, "ironlb-controller"), nil
}

// Up builds the lab, starts the control plane in the cp namespace, installs the CRDs
// and the controller's namespace and RBAC from deploy/, and creates one Ready Node per
// lab node. On error everything made so far is removed.
func Up(ctx context.Context, opts Options) (_ *Env, err error) {
	if err := CheckHost(); err != nil {
		return nil, err
	}
	if opts.Nodes == 0 {
		opts.Nodes = 3
	}
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	e := &Env{RepoRoot: root, log: opts.Log}
	if e.Bins, err = cluster.EnsureBinaries(ctx, opts.Log); err != nil {
		return nil, err
	}
	if e.Controller, err = ControllerBinary(ctx, root, opts.Log); err != nil {
		return nil, err
	}
	e.Lab, err = lab.New(ctx, lab.Spec{Nodes: opts.Nodes, IPv6: opts.IPv6, Router: opts.Router})
	if err != nil {
		return nil, fmt.Errorf("building the lab: %w", err)
	}
	defer func() {
		if err != nil {
			e.Down()
		}
	}()
	e.audit = opts.Audit
	e.profiling = opts.Profiling
	if e.Cluster, err = e.startControlPlane(ctx, "cp", 0, opts.IPv6 && !opts.SingleStack, false); err != nil {
		return nil, err
	}
	for i := 1; i <= opts.Nodes; i++ {
		if err = e.Cluster.CreateNode(ctx, e.Lab.NodeName(i), e.Lab.NodeIP(i), map[string]string{"kubernetes.io/hostname": e.Lab.NodeName(i)}); err != nil {
			return nil, err
		}
	}
	return e, nil
}

// startControlPlane runs etcd + kube-apiserver in the cp namespace (working
// directory dir under the lab's, API port port or the default 6443) and installs
// the CRDs, the namespace and the controller's RBAC from deploy/. dualStack adds
// IPv6 ClusterIPs (2001:db8:ffff::/112) to 198.19.0.0/16. bare skips the installs.
func (e *Env) startControlPlane(ctx context.Context, dir string, port int, dualStack, bare bool) (*cluster.Cluster, error) {
	var v6Services netip.Prefix
	if dualStack {
		v6Services = netip.MustParsePrefix("2001:db8:ffff::/112")
	}
	c, err := cluster.Start(ctx, cluster.Config{
		Dir:              filepath.Join(e.Lab.Dir(), dir),
		Wrap:             e.Lab.Wrap(lab.HostCP),
		ListenAddress:    netip.IPv4Unspecified(),
		ServerAddresses:  []netip.Addr{e.Lab.MgmtCPAddr(), e.Lab.CPAddr(), netip.MustParseAddr("127.0.0.1")},
		AdvertiseAddress: e.Lab.CPAddr(),
		ServiceCIDRv6:    v6Services,
		Port:             port,
		Binaries:         e.Bins,
		Audit:            e.audit && dir == "cp",
		Profiling:        e.profiling && dir == "cp",
	})
	if err != nil {
		return nil, fmt.Errorf("starting the control plane: %w", err)
	}
	if bare {
		return c, nil
	}
	if err = c.InstallCRDs(ctx, filepath.Join(e.RepoRoot, "deploy", "crds")); err == nil {
		err = c.Apply(ctx, false, e.DeployFile("base", "namespace.yaml"), e.DeployFile("controller", "rbac.yaml"))
	}
	if err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

// StartControlPlane runs a further, independent control plane in the cp namespace
// (its own etcd, API server on port, CRDs and controller RBAC installed), for tests
// that need a cluster configured differently (e.g. single-stack Services). It is
// stopped by Down, or earlier by the caller.
func (e *Env) StartControlPlane(ctx context.Context, name string, port int, dualStack bool) (*cluster.Cluster, error) {
	c, err := e.startControlPlane(ctx, name, port, dualStack, false)
	if err == nil {
		e.extra = append(e.extra, c)
	}
	return c, err
}

// DeployFile is the path of a file under deploy/.
func (e *Env) DeployFile(parts ...string) string {
	return filepath.Join(append([]string{e.RepoRoot, "deploy"}, parts...)...)
}

// Down stops everything and removes the lab. Safe to call more than once.
func (e *Env) Down() {
	for _, c := range append([]*cluster.Cluster{e.Cluster}, e.extra...) {
		if c != nil {
			c.Stop()
		}
	}
	if e.Lab != nil {
		if err := e.Lab.Close(); err != nil {
			fmt.Fprintf(e.log, "lab teardown: %v\n", err)
		}
	}
}

// deploymentArgs reads the controller's args from deploy/controller/deployment.yaml,
// so the lab runs the controller the way the shipped manifest does.
func (e *Env) deploymentArgs() ([]string, error) {
	b, err := os.ReadFile(e.DeployFile("controller", "deployment.yaml"))
	if err != nil {
		return nil, err
	}
	var d appsv1.Deployment
	if err := yaml.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("deploy/controller/deployment.yaml: %w", err)
	}
	for _, c := range d.Spec.Template.Spec.Containers {
		if c.Name == "controller" {
			return c.Args, nil
		}
	}
	return nil, errors.New("deploy/controller/deployment.yaml: no container named controller")
}

// Controller is a running ironlb-controller process.
type Controller struct {
	*lab.Process
	Name        string
	MetricsAddr netip.AddrPort // inside the cp namespace
}

// StartController runs ironlb-controller in the cp namespace as ServiceAccount
// ironlb-system/ironlb-controller (its RBAC comes from deploy/ and nothing else), with
// the Deployment's args, a fast leader election, and its own metrics and secure ports.
// extra args are appended (later flags win).
func (e *Env) StartController(ctx context.Context, extra ...string) (*Controller, error) {
	return e.StartControllerFor(ctx, e.Cluster, extra...)
}

// StartControllerFor is StartController against control plane c.
func (e *Env) StartControllerFor(ctx context.Context, c *cluster.Cluster, extra ...string) (*Controller, error) {
	return e.startController(ctx, c, true, extra...)
}

// StartControllerAsShipped runs ironlb-controller against the Env's control plane
// with exactly the Deployment's args, its leader-election timings included (for
// measurements of what users run).
func (e *Env) StartControllerAsShipped(ctx context.Context, extra ...string) (*Controller, error) {
	return e.startController(ctx, e.Cluster, false, extra...)
}

func (e *Env) startController(ctx context.Context, c *cluster.Cluster, fastLease bool, extra ...string) (*Controller, error) {
	kc, err := c.ServiceAccountKubeconfig(ctx, "ironlb-system", "ironlb-controller", 2*time.Hour)
	if err != nil {
		return nil, err
	}
	args, err := e.deploymentArgs()
	if err != nil {
		return nil, err
	}
	e.ctrlCount++
	n := e.ctrlCount
	metrics := netip.AddrPortFrom(e.Lab.CPAddr(), uint16(7470+n))
	args = append(args,
		"--kubeconfig="+kc,
		"--authentication-kubeconfig="+kc,
		"--authorization-kubeconfig="+kc,
		fmt.Sprintf("--secure-port=%d", 10260+n),
		"--metrics-addr="+metrics.String(),
	)
	if fastLease {
		args = append(args, "--leader-elect-lease-duration=4s", "--leader-elect-renew-deadline=3s", "--leader-elect-retry-period=500ms")
	}
	args = append(args, extra...)
	name := fmt.Sprintf("ironlb-controller-%d", n)
	p, err := e.Lab.Start(lab.HostCP, filepath.Join(e.Lab.Dir(), name+".log"), append([]string{e.Controller}, args...)...)
	if err != nil {
		return nil, err
	}
	e.track(p.Pid())
	return &Controller{Process: p, Name: name, MetricsAddr: metrics}, nil
}

// Metrics fetches the controller's /metrics text from inside the cp namespace.
func (e *Env) Metrics(ctx context.Context, c *Controller) (string, error) {
	return e.Lab.HTTPGet(ctx, lab.HostCP, "http://"+c.MetricsAddr.String()+"/metrics", 5*time.Second)
}

// Backend is one "pod": a podserver process in its own namespace on a node.
type Backend struct {
	lab.Pod
	Process *lab.Process
}

// StartBackends starts n pods named <app>-<i> spread over the nodes (round robin),
// each running the pod server on port, and publishes them as ready endpoints of
// Service namespace/service.
func (e *Env) StartBackends(ctx context.Context, namespace, service, app string, n, port int) ([]Backend, error) {
	var out []Backend
	var eps []cluster.Endpoint
	nodes := e.Lab.Nodes()
	for i := 0; i < n; i++ {
		node := i%nodes + 1
		k := 10 + i/nodes
		pod, err := e.Lab.AddPod(ctx, node, k, fmt.Sprintf("%s-%d", app, i))
		if err != nil {
			return nil, err
		}
		p, err := e.Lab.StartPodServer(ctx, pod, e.Bins.PodServer, port)
		if err != nil {
			return nil, err
		}
		out = append(out, Backend{Pod: pod, Process: p})
		e.track(p.Pid())
		eps = append(eps, cluster.Endpoint{Name: pod.Name, Node: e.Lab.NodeName(node), IP: pod.IP, Ready: true, Serving: true})
	}
	if err := e.Cluster.SetEndpoints(ctx, namespace, service, int32(port), corev1.ProtocolTCP, eps); err != nil {
		return nil, err
	}
	return out, nil
}
