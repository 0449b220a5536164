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
	Log    io.Writer
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
	pids       []int // processes started through the Env (besides the control plane)
}

// PIDs are the processes this Env started: the control plane, controllers and
// backends. After Down none of them may exist.
func (e *Env) PIDs() []int {
	var pids []int
	if e.Cluster != nil {
		pids = append(pids, e.Cluster.PIDs()...)
	}
	return append(pids, e.pids...)
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
	e.Cluster, err = cluster.Start(ctx, cluster.Config{
		Dir:              filepath.Join(e.Lab.Dir(), "cp"),
		Wrap:             e.Lab.Wrap(lab.HostCP),
		ListenAddress:    netip.IPv4Unspecified(),
		ServerAddresses:  []netip.Addr{e.Lab.MgmtCPAddr(), e.Lab.CPAddr(), netip.MustParseAddr("127.0.0.1")},
		AdvertiseAddress: e.Lab.CPAddr(),
		Binaries:         e.Bins,
	})
	if err != nil {
		return nil, fmt.Errorf("starting the control plane: %w", err)
	}
	if err = e.Cluster.InstallCRDs(ctx, filepath.Join(root, "deploy", "crds")); err != nil {
		return nil, err
	}
	if err = e.Cluster.Apply(ctx, false, e.DeployFile("namespace.yaml"), e.DeployFile("controller", "rbac.yaml")); err != nil {
		return nil, err
	}
	for i := 1; i <= opts.Nodes; i++ {
		if err = e.Cluster.CreateNode(ctx, e.Lab.NodeName(i), e.Lab.NodeIP(i), map[string]string{"kubernetes.io/hostname": e.Lab.NodeName(i)}); err != nil {
			return nil, err
		}
	}
	return e, nil
}

// DeployFile is the path of a file under deploy/.
func (e *Env) DeployFile(parts ...string) string {
	return filepath.Join(append([]string{e.RepoRoot, "deploy"}, parts...)...)
}

// Down stops everything and removes the lab. Safe to call more than once.
func (e *Env) Down() {
	if e.Cluster != nil {
		e.Cluster.Stop()
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
	kc, err := e.Cluster.ServiceAccountKubeconfig(ctx, "ironlb-system", "ironlb-controller", 2*time.Hour)
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
		"--leader-elect-lease-duration=4s", "--leader-elect-renew-deadline=3s", "--leader-elect-retry-period=500ms",
	)
	args = append(args, extra...)
	name := fmt.Sprintf("ironlb-controller-%d", n)
	p, err := e.Lab.Start(lab.HostCP, filepath.Join(e.Lab.Dir(), name+".log"), append([]string{e.Controller}, args...)...)
	if err != nil {
		return nil, err
	}
	e.pids = append(e.pids, p.Pid())
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
		e.pids = append(e.pids, p.Pid())
		eps = append(eps, cluster.Endpoint{Name: pod.Name, Node: e.Lab.NodeName(node), IP: pod.IP, Ready: true, Serving: true})
	}
	if err := e.Cluster.SetEndpoints(ctx, namespace, service, int32(port), corev1.ProtocolTCP, eps); err != nil {
		return nil, err
	}
	return out, nil
}
