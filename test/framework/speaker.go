package framework

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	"github.com/ironlb/ironlb/test/cluster"
	"github.com/ironlb/ironlb/test/lab"
)

// Resources the speakers write (ironlb.io/v1alpha1).
var (
	ServiceAnnouncements = schema.GroupVersionResource{Group: "ironlb.io", Version: "v1alpha1", Resource: "serviceannouncements"}
	BGPSessions          = schema.GroupVersionResource{Group: "ironlb.io", Version: "v1alpha1", Resource: "bgpsessions"}
)

// SpeakerMetricsPort is where the lab's speakers serve /metrics, /readyz and
// /healthz, on their node's LAN address.
const SpeakerMetricsPort = 7473

// speakerState is what the Env shares between the speakers it starts.
type speakerState struct {
	mu         sync.Mutex
	binary     string
	kubeconfig string // ServiceAccount ironlb-system/ironlb-speaker, server on the LAN
	secret     string // memberlist secret file
	rbac       bool
}

// Speaker is a running ironlb-speaker process on a lab node.
type Speaker struct {
	*lab.Process
	Node        int
	Name        string // the node name
	MetricsAddr netip.AddrPort
}

// ironlbBinary finds bin/<name>: $IRONLB_BIN/<name> if set, else it is built
// with `go build` from the repository into a temporary folder.
func ironlbBinary(ctx context.Context, root, name string, log io.Writer) (string, error) {
	if dir := os.Getenv("IRONLB_BIN"); dir != "" {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	out := filepath.Join(os.TempDir(), "ironlb-e2e-bin")
	fmt.Fprintf(log, "building %s ...\n", name)
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out+"/", "./cmd/"+name)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building %s: %v\n%s", name, err, b)
	}
	return filepath.Join(out, name), nil
}

// lanKubeconfig rewrites a kubeconfig of the control plane to reach the API
// server at cp's LAN address (nodes have no route to the management link).
func (e *Env) lanKubeconfig(path string) (string, error) {
	kc, err := clientcmd.LoadFromFile(path)
	if err != nil {
		return "", err
	}
	server := fmt.Sprintf("https://%s", netip.AddrPortFrom(e.Lab.CPAddr(), uint16(e.Cluster.Config().Port)))
	for _, c := range kc.Clusters {
		c.Server = server
	}
	out := strings.TrimSuffix(path, ".kubeconfig") + "-lan.kubeconfig"
	return out, clientcmd.WriteToFile(*kc, out)
}

// prepareSpeakers installs the speaker's RBAC from deploy/speaker/rbac.yaml,
// finds the binary, writes the memberlist secret and the ServiceAccount's
// kubeconfig (once per Env).
func (e *Env) prepareSpeakers(ctx context.Context) (*speakerState, error) {
	st := &e.speaker
	st.mu.Lock()
	defer st.mu.Unlock()
	if !st.rbac {
		if err := e.Cluster.Apply(ctx, false, e.DeployFile("speaker", "rbac.yaml")); err != nil {
			return nil, fmt.Errorf("installing deploy/speaker/rbac.yaml: %w", err)
		}
		st.rbac = true
	}
	if st.binary == "" {
		b, err := ironlbBinary(ctx, e.RepoRoot, "ironlb-speaker", e.log)
		if err != nil {
			return nil, err
		}
		st.binary = b
	}
	if st.secret == "" {
		var b [32]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, err
		}
		p := filepath.Join(e.Lab.Dir(), "memberlist-secret")
		if err := os.WriteFile(p, []byte(base64.StdEncoding.EncodeToString(b[:])), 0o600); err != nil {
			return nil, err
		}
		st.secret = p
	}
	if st.kubeconfig == "" {
		kc, err := e.Cluster.ServiceAccountKubeconfig(ctx, "ironlb-system", "ironlb-speaker", 2*time.Hour)
		if err != nil {
			return nil, err
		}
		if st.kubeconfig, err = e.lanKubeconfig(kc); err != nil {
			return nil, err
		}
	}
	return st, nil
}

// daemonSetArgs reads the speaker's args from deploy/speaker/daemonset.yaml, so
// the lab runs it the way the shipped manifest does.
func (e *Env) daemonSetArgs() ([]string, error) {
	b, err := os.ReadFile(e.DeployFile("speaker", "daemonset.yaml"))
	if err != nil {
		return nil, err
	}
	var d appsv1.DaemonSet
	if err := yaml.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("deploy/speaker/daemonset.yaml: %w", err)
	}
	for _, c := range d.Spec.Template.Spec.Containers {
		if c.Name == "speaker" {
			return c.Args, nil
		}
	}
	return nil, errors.New("deploy/speaker/daemonset.yaml: no container named speaker")
}

// StartSpeaker runs ironlb-speaker on lab node i (its network namespace, like
// hostNetwork) as ServiceAccount ironlb-system/ironlb-speaker with the RBAC of
// deploy/speaker and the DaemonSet's args, the Env's memberlist secret, and
// metrics on <node IP>:7473. extra args are appended (later flags win). It
// returns once /readyz answers ok (informers synced, memberlist settled), at
// most 30s.
func (e *Env) StartSpeaker(ctx context.Context, i int, extra ...string) (*Speaker, error) {
	st, err := e.prepareSpeakers(ctx)
	if err != nil {
		return nil, err
	}
	args, err := e.daemonSetArgs()
	if err != nil {
		return nil, err
	}
	host := e.Lab.NodeName(i)
	metrics := netip.AddrPortFrom(e.Lab.NodeIP(i), SpeakerMetricsPort)
	args = append(args,
		"--node-name="+host,
		"--namespace=ironlb-system",
		"--kubeconfig="+st.kubeconfig,
		"--memberlist-secret-file="+st.secret,
		"--metrics-addr="+metrics.String(),
	)
	args = append(args, extra...)
	p, err := e.Lab.Start(host, filepath.Join(e.Lab.Dir(), host+"-speaker.log"), append([]string{st.binary}, args...)...)
	if err != nil {
		return nil, err
	}
	e.track(p.Pid())
	sp := &Speaker{Process: p, Node: i, Name: host, MetricsAddr: metrics}
	if err := e.WaitSpeakerReady(ctx, sp, 30*time.Second); err != nil {
		_ = p.Stop()
		return nil, err
	}
	return sp, nil
}

// StartSpeakers starts a speaker on every lab node, concurrently.
func (e *Env) StartSpeakers(ctx context.Context, extra ...string) ([]*Speaker, error) {
	if _, err := e.prepareSpeakers(ctx); err != nil {
		return nil, err
	}
	n := e.Lab.Nodes()
	out := make([]*Speaker, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := 1; i <= n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i-1], errs[i-1] = e.StartSpeaker(ctx, i, extra...)
		}()
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

// WaitSpeakerReady waits until the speaker's /readyz answers ok.
func (e *Env) WaitSpeakerReady(ctx context.Context, sp *Speaker, within time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	var last error
	for {
		var body string
		body, last = e.Lab.HTTPGet(ctx, sp.Name, "http://"+sp.MetricsAddr.String()+"/readyz", time.Second)
		if last == nil && strings.TrimSpace(body) == "ok" {
			return nil
		}
		if last == nil {
			last = errors.New(strings.TrimSpace(body))
		}
		select {
		case <-sp.Done():
			return fmt.Errorf("speaker on %s exited: %v: %s", sp.Name, sp.Err(), sp.Tail(3000))
		case <-ctx.Done():
			return fmt.Errorf("speaker on %s not ready within %v: %v; log: %s", sp.Name, within, last, sp.Tail(3000))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Kill sends SIGKILL to the speaker (a crash: no handover) and waits until it
// is reaped.
func (sp *Speaker) Kill() {
	_ = syscall.Kill(-sp.Pid(), syscall.SIGKILL)
	<-sp.Done()
}

// Terminate sends SIGTERM (a planned stop: the speaker hands its addresses
// over) and waits up to 10s for it to exit, then kills it.
func (sp *Speaker) Terminate() error {
	_ = syscall.Kill(-sp.Pid(), syscall.SIGTERM)
	select {
	case <-sp.Done():
		return nil
	case <-time.After(10 * time.Second):
		sp.Kill()
		return fmt.Errorf("speaker on %s did not exit within 10s of SIGTERM", sp.Name)
	}
}

// SpeakerMetrics fetches the speaker's /metrics text from inside its node.
func (e *Env) SpeakerMetrics(ctx context.Context, sp *Speaker) (string, error) {
	return e.Lab.HTTPGet(ctx, sp.Name, "http://"+sp.MetricsAddr.String()+"/metrics", 5*time.Second)
}

// MetricValue returns the value of the first sample of metrics text whose
// name and labels start with series (e.g. `ironlb_memberlist_members{state="alive"}`).
func MetricValue(text, series string) (float64, bool) {
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, series) {
			f := strings.Fields(line)
			if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
				return v, true
			}
		}
	}
	return 0, false
}

// Announcement is a ServiceAnnouncement's status.
type Announcement struct {
	Name       string
	Address    string
	Mode       string
	Node       string
	Services   []string
	Interfaces []string
	Prefix     string
	Peers      []string
}

// Announcements lists the ServiceAnnouncements of address (all when empty).
func (e *Env) Announcements(ctx context.Context, address string) ([]Announcement, error) {
	opts := metav1.ListOptions{}
	if address != "" {
		opts.FieldSelector = "status.address=" + address
	}
	list, err := e.Cluster.Dynamic.Resource(ServiceAnnouncements).List(ctx, opts)
	if err != nil {
		return nil, err
	}
	var out []Announcement
	for _, u := range list.Items {
		st, _, _ := unstructured.NestedMap(u.Object, "status")
		s := func(k string) string { v, _ := st[k].(string); return v }
		l := func(k string) []string { v, _, _ := unstructured.NestedStringSlice(st, k); return v }
		out = append(out, Announcement{Name: u.GetName(), Address: s("address"), Mode: s("mode"), Node: s("node"),
			Services: l("services"), Interfaces: l("interfaces"), Prefix: s("prefix"), Peers: l("peers")})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// BGPSession is a BGPSession's status.
type BGPSession struct {
	Name, Node, Peer, PeerAddress, State, BFD, Message string
	Prefixes                                           int64    // prefixesAdvertised: carried now
	Advertised                                         []string // prefixes: what the speaker advertises on it
}

// BGPSessions lists the BGPSessions.
func (e *Env) BGPSessions(ctx context.Context) ([]BGPSession, error) {
	list, err := e.Cluster.Dynamic.Resource(BGPSessions).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	var out []BGPSession
	for _, u := range list.Items {
		st, _, _ := unstructured.NestedMap(u.Object, "status")
		s := func(k string) string { v, _ := st[k].(string); return v }
		n, _, _ := unstructured.NestedInt64(st, "prefixesAdvertised")
		adv, _, _ := unstructured.NestedStringSlice(st, "prefixes")
		out = append(out, BGPSession{Name: u.GetName(), Node: s("node"), Peer: s("peer"), PeerAddress: s("peerAddress"),
			State: s("state"), BFD: s("bfd"), Message: s("message"), Prefixes: n, Advertised: adv})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// StartKubeProxy runs a real kube-proxy (the lab's, built from the same
// k8s.io/kubernetes version as the API server) on lab node i in iptables mode,
// as user system:kube-proxy (bound to system:node-proxier by the API server's
// bootstrap policy). Traffic from outside the pod ranges is masqueraded like
// in a cluster whose cluster CIDR is 198.18.0.0/16 (and 2001:db8:18::/48). It
// returns once kube-proxy's /healthz answers (its rules are synced), at most 30s.
func (e *Env) StartKubeProxy(ctx context.Context, i int) (*lab.Process, error) {
	return e.StartKubeProxyMode(ctx, i, "iptables", 30*time.Second, "--iptables-sync-period=30s")
}

// CleanupKubeProxy runs `kube-proxy --cleanup` on lab node i: it removes the
// KUBE-* rules a kube-proxy left there (stop the kube-proxy first).
func (e *Env) CleanupKubeProxy(ctx context.Context, i int) error {
	if e.Bins.KubeProxy == "" {
		return errors.New("kube-proxy binary not built (cluster.EnsureBinaries)")
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if out, err := e.Lab.Exec(ctx, e.Lab.NodeName(i), e.Bins.KubeProxy, "--cleanup", "--proxy-mode=iptables", "--v=0"); err != nil {
		return fmt.Errorf("kube-proxy --cleanup on %s: %w: %s", e.Lab.NodeName(i), err, out)
	}
	return nil
}

// CleanupSpeaker runs `ironlb-speaker --cleanup` on lab node i: it removes the
// IRONLB-* rules of --proxy=iptables and the node's status objects (stop the
// speaker first).
func (e *Env) CleanupSpeaker(ctx context.Context, i int) error {
	st, err := e.prepareSpeakers(ctx)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 40*time.Second)
	defer cancel()
	host := e.Lab.NodeName(i)
	if out, err := e.Lab.Exec(ctx, host, st.binary, "--cleanup", "--node-name="+host, "--kubeconfig="+st.kubeconfig); err != nil {
		return fmt.Errorf("ironlb-speaker --cleanup on %s: %w: %s", host, err, out)
	}
	return nil
}

// IronlbProxyArgs are the speaker args that run ironlb's iptables proxy in
// place of kube-proxy, with the lab's pod networks as cluster CIDRs.
func (e *Env) IronlbProxyArgs() []string {
	cidrs := "198.18.0.0/16"
	if e.Lab.Spec().IPv6 {
		cidrs += ",2001:db8:18::/48"
	}
	return []string{"--proxy=iptables", "--cluster-cidr=" + cidrs}
}

// StartDualStackBackends is StartBackends with endpoints of both families (the
// pod server listens on both): the Service's EndpointSlices hold each pod's
// IPv4 and IPv6 address. The lab must have IPv6.
func (e *Env) StartDualStackBackends(ctx context.Context, namespace, service, app string, n, port int, nodes ...int) ([]Backend, error) {
	if !e.Lab.Spec().IPv6 {
		return nil, errors.New("StartDualStackBackends needs a lab with IPv6")
	}
	bs, err := e.StartBackendsOn(ctx, namespace, service, app, n, port, nodes...)
	if err != nil {
		return nil, err
	}
	return bs, e.PublishEndpoints(ctx, namespace, service, port, bs, true)
}

// StartBackendsOn is StartBackends on the given nodes (round robin; all nodes
// when none is given).
func (e *Env) StartBackendsOn(ctx context.Context, namespace, service, app string, n, port int, nodes ...int) ([]Backend, error) {
	if len(nodes) == 0 {
		for i := 1; i <= e.Lab.Nodes(); i++ {
			nodes = append(nodes, i)
		}
	}
	var out []Backend
	used := map[string]bool{}
	for _, p := range e.Lab.Pods() {
		used[p.Host] = true
	}
	for i := 0; i < n; i++ {
		node := nodes[i%len(nodes)]
		k := 10
		for used[fmt.Sprintf("pod-%d-%d", node, k)] {
			k++
		}
		used[fmt.Sprintf("pod-%d-%d", node, k)] = true
		pod, err := e.Lab.AddPod(ctx, node, k, fmt.Sprintf("%s-%d", app, i))
		if err != nil {
			return nil, err
		}
		p, err := e.Lab.StartPodServer(ctx, pod, e.Bins.PodServer, port)
		if err != nil {
			return nil, err
		}
		e.track(p.Pid())
		out = append(out, Backend{Pod: pod, Process: p})
	}
	return out, e.PublishEndpoints(ctx, namespace, service, port, out, false)
}

// PublishEndpoints makes bs the ready endpoints of Service namespace/service
// (IPv4, and IPv6 too with dualStack).
func (e *Env) PublishEndpoints(ctx context.Context, namespace, service string, port int, bs []Backend, dualStack bool) error {
	var eps []cluster.Endpoint
	for _, b := range bs {
		node := e.Lab.NodeName(b.Node)
		eps = append(eps, cluster.Endpoint{Name: b.Name, Node: node, IP: b.IP, Ready: true, Serving: true})
		if dualStack && b.IPv6.IsValid() {
			eps = append(eps, cluster.Endpoint{Name: b.Name, Node: node, IP: b.IPv6, Ready: true, Serving: true})
		}
	}
	return e.Cluster.SetEndpoints(ctx, namespace, service, int32(port), corev1.ProtocolTCP, eps)
}

// solicitedNA matches a solicited Neighbor Advertisement in tcpdump -vv
// output: the target and, on the next line, its target link-layer address.
var solicitedNA = regexp.MustCompile(`tgt is ([0-9a-f:]+), Flags \[solicited[^\]]*\]\s*\n\s*destination link-address option \(2\), length 8 \(1\): ([0-9a-f]{2}(?::[0-9a-f]{2}){5})`)

// NDPing sends count (1..20) Neighbor Solicitations for ip from host's uplink
// with ndisc6 (Debian package ndisc6), 300ms apart, and returns the distinct
// MACs that answered with a solicited Neighbor Advertisement, in order of first
// answer. No answer is (nil, nil). The answers are read from a capture
// (tcpdump) rather than from ndisc6, which only accepts advertisements sent
// from the target address itself while RFC 4861 lets a responder use any of its
// interface's addresses (ironlb's answer from its link-local address, which
// Linux accepts).
func (e *Env) NDPing(ctx context.Context, from string, ip netip.Addr, count int) ([]string, error) {
	if !ip.Is6() {
		return nil, fmt.Errorf("NDPing needs an IPv6 address, got %s", ip)
	}
	if err := lab.CheckAddr(ip); err != nil {
		return nil, err
	}
	if count < 1 || count > 20 {
		return nil, fmt.Errorf("NDPing count %d, want 1..20", count)
	}
	for _, tool := range []string{"ndisc6", "tcpdump"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("%s is missing: apt-get install %s", tool, tool)
		}
	}
	logPath := filepath.Join(e.Lab.Dir(), fmt.Sprintf("ndping-%s-%d.log", from, time.Now().UnixNano()))
	capture, err := e.Lab.Start(from, logPath, "tcpdump", "-l", "-n", "-vv", "-i", lab.LANIf, "icmp6 and ip6[40] == 136")
	if err != nil {
		return nil, err
	}
	defer os.Remove(logPath)
	defer capture.Stop()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(capture.Tail(4096), "listening on") {
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("tcpdump in %s did not start: %s", from, capture.Tail(2000))
		}
		time.Sleep(20 * time.Millisecond)
	}
	// ndisc6 exits 2 when it accepts no answer (see above); the capture decides.
	_, _ = e.Lab.Exec(ctx, from, "ndisc6", "-m", "-n", "-q", "-r", strconv.Itoa(count), "-w", "300", ip.String(), lab.LANIf)
	time.Sleep(100 * time.Millisecond) // the last answer's capture line
	if err := capture.Stop(); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(logPath)
	if err != nil {
		return nil, err
	}
	var macs []string
	seen := map[string]bool{}
	for _, m := range solicitedNA.FindAllStringSubmatch(string(b), -1) {
		if tgt, err := netip.ParseAddr(m[1]); err != nil || tgt != ip {
			continue
		}
		mac := strings.ToLower(m[2])
		if !seen[mac] {
			seen[mac] = true
			macs = append(macs, mac)
		}
	}
	return macs, nil
}
