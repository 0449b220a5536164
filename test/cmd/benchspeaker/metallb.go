package main

// The same failover scenarios on MetalLB's own speaker (go.universe.tf/metallb
// v0.15.2, Layer 2 mode, native, memberlist at its defaults), in the same lab
// and run as ironlb's, with -peer metallb: after ironlb's scenarios its
// speakers are stopped (SIGTERM) and one MetalLB speaker per node takes over
// the same Services, VIPs (assigned by ironlb-controller, which keeps running:
// the controller is not on the failover path) and endpoints, with kube-proxy
// as the data path for both. Only one of the two announces at any time.
//
// What the lab stands in for (there is no kubelet): a Pod object per speaker
// (hostNetwork, spec.nodeName, status.podIP = the node's LAN address, Running
// and Ready, written through the status subresource), because MetalLB finds
// its memberlist peers by listing the Pods with its labels and reads its own
// Pod at start; the memberlist key a Secret volume would hold, as a file; the
// admin kubeconfig (cluster-admin) instead of MetalLB's RBAC. The env and
// args are those of config/manifests/metallb-native.yaml.

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/ironlb/ironlb/test/framework"
	"github.com/ironlb/ironlb/test/internal/benchlog"
)

const (
	metallbVersion   = "v0.15.2"
	metallbNamespace = "metallb-system"
	// metallbLabels select the speaker Pods (the manifest's METALLB_ML_LABELS).
	metallbLabels      = "app=metallb,component=speaker"
	metallbMetricsPort = 7472
	// metallbSlack lengthens every probe window for MetalLB: its takeover at
	// memberlist's defaults takes seconds, longer than ironlb's windows.
	metallbSlack = 10 * time.Second
)

var (
	metallbPools = schema.GroupVersionResource{Group: "metallb.io", Version: "v1beta1", Resource: "ipaddresspools"}
	metallbL2Ads = schema.GroupVersionResource{Group: "metallb.io", Version: "v1beta1", Resource: "l2advertisements"}
)

// metallbSpeakers runs MetalLB's speaker on the lab's nodes.
type metallbSpeakers struct {
	bin        string
	kubeconfig string // cluster-admin, server at cp's LAN address
	secretDir  string // holds the memberlist key file "secretkey"
	starts     map[string]int
	// nudged is when a node's Node object was last relabelled (see converge).
	nudged map[string]time.Time
}

// The samples behind every stats line, by implementation, for the ratio
// lines: the scenarios are shared with ironlb's run and report through stats.
var (
	samples     = map[string]map[string][]time.Duration{}
	measuringOn = "ironlb"
)

func init() {
	plain := stats
	stats = func(name string, ds []time.Duration) string {
		if samples[measuringOn] == nil {
			samples[measuringOn] = map[string][]time.Duration{}
		}
		samples[measuringOn][name] = ds
		return plain(name, ds)
	}
}

// runMetalLB stops ironlb's speakers, starts MetalLB's and runs scenarios a, b
// and c (those in -only) on it, then the ratio lines.
func (b *bench) runMetalLB(ctx context.Context) ([]string, error) {
	env := b.env
	bin, crds, err := buildMetalLBSpeaker(ctx, env.RepoRoot)
	if err != nil {
		return nil, err
	}
	say("stopping ironlb's speakers (SIGTERM) before MetalLB's start; load average %s", loadavg())
	for _, sp := range b.speakers {
		if err := sp.Terminate(); err != nil {
			return nil, err
		}
	}
	// What an operator removing ironlb runs: without it, the handover
	// forwards of ironlb's last planned-restart trials (they outlive the
	// process, for the next one to adopt) would relay MetalLB's connections
	// to the old owners until their windows end.
	for i := 1; i <= env.Lab.Nodes(); i++ {
		if err := env.CleanupSpeaker(ctx, i); err != nil {
			return nil, err
		}
	}
	m := &metallbSpeakers{bin: bin, starts: map[string]int{}, nudged: map[string]time.Time{}}
	if err := m.install(ctx, env, crds); err != nil {
		return nil, err
	}
	b.peer = m
	b.slack = metallbSlack
	measuringOn = "MetalLB"
	for i := 1; i <= env.Lab.Nodes(); i++ {
		if err := m.restart(ctx, b, env.Lab.NodeName(i)); err != nil {
			return nil, err
		}
	}
	owners, err := b.converge(ctx)
	if err != nil {
		return nil, err
	}
	say("MetalLB %s speakers on 3 nodes; %d VIPs announced: %v", metallbVersion, len(owners), owners)
	lines := []string{"", fmt.Sprintf("MetalLB %s speaker (Layer 2, native, memberlist defaults), same lab, Services and probes; probe windows %v longer", metallbVersion, metallbSlack)}
	for _, sc := range []struct {
		key, title string
		run        func(context.Context) ([]string, error)
	}{
		{"a", "(a) owner's speaker SIGKILLed", b.killed},
		{"b", "(b) owner node's LAN link cut", b.linkCut},
		{"c", "(c) owner's speaker stopped (SIGTERM) under a connection stream", b.planned},
	} {
		if !slices.Contains(b.only, sc.key) {
			continue
		}
		say("MetalLB %s: %d trials; load average %s", sc.title, b.trials, loadavg())
		out, err := sc.run(ctx)
		if err != nil {
			return nil, fmt.Errorf("MetalLB %s: %w", sc.title, err)
		}
		lines = append(lines, "MetalLB "+sc.title+fmt.Sprintf(" [load average after: %s]", loadavg()))
		lines = append(lines, out...)
	}
	return append(lines, ratioLines(samples["ironlb"], samples["MetalLB"])...), nil
}

// ratioLines compares the figures both implementations reported under the
// same name: MetalLB's p50 and p95 over ironlb's.
func ratioLines(ironlb, metallb map[string][]time.Duration) []string {
	var names []string
	for name := range metallb {
		if len(ironlb[name]) > 0 && len(metallb[name]) > 0 {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return nil
	}
	slices.Sort(names)
	out := []string{"", "MetalLB / ironlb (p50, p95):"}
	for _, name := range names {
		i50, i95 := benchlog.Quantile(ironlb[name], 0.5), benchlog.Quantile(ironlb[name], 0.95)
		m50, m95 := benchlog.Quantile(metallb[name], 0.5), benchlog.Quantile(metallb[name], 0.95)
		out = append(out, fmt.Sprintf("  %-58s p50 %v / %v = %s, p95 %v / %v = %s", name, m50, i50, ratio(m50, i50), m95, i95, ratio(m95, i95)))
	}
	return out
}

func ratio(a, b time.Duration) string {
	if b <= 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.1fx", float64(a)/float64(b))
}

// install puts in what MetalLB's speakers read: its CRDs, namespace, the
// speaker Pods (standing in for the DaemonSet's), an IPAddressPool holding
// the VIPs ironlb-controller assigned and an L2Advertisement for it, the
// memberlist key and a kubeconfig that reaches the API server from a node.
func (m *metallbSpeakers) install(ctx context.Context, env *framework.Env, crds string) error {
	if err := env.Cluster.InstallCRDs(ctx, crds); err != nil {
		return fmt.Errorf("MetalLB's CRDs: %w", err)
	}
	core := env.Cluster.Client.CoreV1()
	if _, err := core.Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: metallbNamespace}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	if _, err := core.ServiceAccounts(metallbNamespace).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "speaker"}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	labels := map[string]string{}
	for _, kv := range strings.Split(metallbLabels, ",") {
		k, v, _ := strings.Cut(kv, "=")
		labels[k] = v
	}
	for i := 1; i <= env.Lab.Nodes(); i++ {
		node, ip := env.Lab.NodeName(i), env.Lab.NodeIP(i).String()
		pod, err := core.Pods(metallbNamespace).Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "speaker-" + node, Labels: labels},
			Spec: corev1.PodSpec{NodeName: node, HostNetwork: true, ServiceAccountName: "speaker",
				Containers: []corev1.Container{{Name: "speaker", Image: "quay.io/metallb/speaker:" + metallbVersion}}},
		}, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("speaker Pod on %s: %w", node, err)
		}
		now := metav1.Now()
		pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, HostIP: ip, PodIP: ip,
			HostIPs: []corev1.HostIP{{IP: ip}}, PodIPs: []corev1.PodIP{{IP: ip}}, StartTime: &now,
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now}}}
		if _, err := core.Pods(metallbNamespace).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("speaker Pod on %s: status: %w", node, err)
		}
	}
	// 128 random bits, base64 without padding: what MetalLB's controller
	// puts into its memberlist Secret.
	key := make([]byte, 16)
	if _, err := rand.Read(key); err != nil {
		return err
	}
	m.secretDir = filepath.Join(env.Lab.Dir(), "metallb-memberlist")
	if err := os.MkdirAll(m.secretDir, 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(m.secretDir, "secretkey"), []byte(base64.RawStdEncoding.EncodeToString(key)), 0o600); err != nil {
		return err
	}
	kc, err := clientcmd.LoadFromFile(env.Cluster.AdminKubeconfig)
	if err != nil {
		return err
	}
	for _, c := range kc.Clusters {
		c.Server = "https://" + netip.AddrPortFrom(env.Lab.CPAddr(), uint16(env.Cluster.Config().Port)).String()
	}
	m.kubeconfig = filepath.Join(env.Lab.Dir(), "metallb-speaker-lan.kubeconfig")
	if err := clientcmd.WriteToFile(*kc, m.kubeconfig); err != nil {
		return err
	}
	// The range of ironlb's IPPool "bench": the Services keep their VIPs.
	if _, err := framework.CreateYAML(ctx, env.Cluster.Dynamic, metallbPools,
		`{apiVersion: metallb.io/v1beta1, kind: IPAddressPool, metadata: {name: bench, namespace: `+metallbNamespace+`}, spec: {addresses: ["192.0.2.200-192.0.2.219"], autoAssign: false}}`); err != nil {
		return err
	}
	_, err = framework.CreateYAML(ctx, env.Cluster.Dynamic, metallbL2Ads,
		`{apiVersion: metallb.io/v1beta1, kind: L2Advertisement, metadata: {name: bench, namespace: `+metallbNamespace+`}, spec: {ipAddressPools: [bench]}}`)
	return err
}

// restart starts MetalLB's speaker on node (a new log file per start, read by
// members) and waits until it serves /metrics.
func (m *metallbSpeakers) restart(ctx context.Context, b *bench, node string) error {
	env := b.env
	i, err := strconv.Atoi(strings.TrimPrefix(node, "node"))
	if err != nil {
		return fmt.Errorf("node name %q: %w", node, err)
	}
	ip := env.Lab.NodeIP(i).String()
	m.starts[node]++
	logPath := filepath.Join(env.Lab.Dir(), fmt.Sprintf("%s-metallb-speaker-%d.log", node, m.starts[node]))
	p, err := env.Lab.Start(node, logPath, "env",
		"KUBECONFIG="+m.kubeconfig,
		"METALLB_NODE_NAME="+node,
		"METALLB_POD_NAME=speaker-"+node,
		"METALLB_NAMESPACE="+metallbNamespace,
		"METALLB_HOST="+ip,
		"METALLB_ML_BIND_ADDR="+ip,
		"METALLB_ML_LABELS="+metallbLabels,
		"METALLB_ML_SECRET_KEY_PATH="+m.secretDir,
		m.bin, "--port="+strconv.Itoa(metallbMetricsPort), "--log-level=info")
	if err != nil {
		return err
	}
	sp := &framework.Speaker{Process: p, Node: i, Name: node}
	b.speakers[node] = sp
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := m.metrics(ctx, b, sp); err == nil {
			return nil
		}
		select {
		case <-p.Done():
			return fmt.Errorf("MetalLB's speaker on %s exited: %v: %s", node, p.Err(), p.Tail(3000))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("MetalLB's speaker on %s serves no /metrics within 30s: %s", node, p.Tail(3000))
		}
	}
}

func (m *metallbSpeakers) metrics(ctx context.Context, b *bench, sp *framework.Speaker) (string, error) {
	addr := netip.AddrPortFrom(b.env.Lab.NodeIP(sp.Node), metallbMetricsPort)
	return b.env.Lab.HTTPGet(ctx, sp.Name, "http://"+addr.String()+"/metrics", 5*time.Second)
}

// announcedRE matches a metallb_speaker_announced sample (labels sorted: ip,
// node, protocol, service).
var announcedRE = regexp.MustCompile(`(?m)^metallb_speaker_announced\{ip="([^"]+)",node="([^"]+)",protocol="layer2",[^}]*\} 1$`)

// converge waits until every MetalLB speaker runs, its memberlist holds all
// the nodes (from its log) and every VIP is announced by exactly one of them
// (their metallb_speaker_announced gauges); it returns the owners. A speaker
// whose member list stays short for 3s (after a link cut both sides declared
// the other dead, and MetalLB joins again only every minute or when its own
// Node's labels change) gets a label change on its Node: MetalLB's own
// rejoin path, which a kubelet's status updates would not take.
func (m *metallbSpeakers) converge(ctx context.Context, b *bench) (map[netip.Addr]string, error) {
	deadline := time.Now().Add(60 * time.Second)
	short := map[string]time.Time{}
	var why string
	for time.Now().Before(deadline) {
		why = ""
		count := map[netip.Addr]int{}
		owners := map[netip.Addr]string{}
		for name, sp := range b.speakers {
			select {
			case <-sp.Done():
				return nil, fmt.Errorf("MetalLB's speaker on %s exited: %v: %s", name, sp.Err(), sp.Tail(3000))
			default:
			}
			members, err := metallbMembers(sp.LogPath(), name)
			if err != nil {
				return nil, err
			}
			if len(members) != len(b.speakers) {
				why = fmt.Sprintf("%s sees members %v", name, members)
				if short[name].IsZero() {
					short[name] = time.Now()
				}
				if time.Since(short[name]) > 3*time.Second && time.Since(m.nudged[name]) > 5*time.Second {
					if err := m.nudge(ctx, b, name); err != nil {
						return nil, err
					}
				}
			} else {
				delete(short, name)
			}
			text, err := m.metrics(ctx, b, sp)
			if err != nil {
				why = fmt.Sprintf("%s: %v", name, err)
				continue
			}
			for _, s := range announcedRE.FindAllStringSubmatch(text, -1) {
				ip, err := netip.ParseAddr(s[1])
				if err != nil {
					return nil, fmt.Errorf("%s: metallb_speaker_announced ip %q: %w", name, s[1], err)
				}
				owners[ip] = s[2]
				count[ip]++
			}
		}
		for _, ip := range b.vips {
			if count[ip] != 1 && why == "" {
				why = fmt.Sprintf("%s is announced by %d speakers", ip, count[ip])
			}
		}
		if why == "" {
			return owners, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil, fmt.Errorf("MetalLB: no convergence within 60s: %s", why)
}

// nudge changes a label of node's Node object, which makes MetalLB's speaker
// on that node join the speakers it finds in the Pod list again.
func (m *metallbSpeakers) nudge(ctx context.Context, b *bench, node string) error {
	m.nudged[node] = time.Now()
	patch := fmt.Sprintf(`{"metadata":{"labels":{"bench.ironlb.io/rejoin":"%d"}}}`, time.Now().UnixNano())
	_, err := b.env.Cluster.Client.CoreV1().Nodes().Patch(ctx, node, "application/merge-patch+json", []byte(patch), metav1.PatchOptions{})
	if err == nil {
		say("  MetalLB's speaker on %s has not seen every member for 3s: relabelled its Node (MetalLB rejoins on that)", node)
	}
	return err
}

// metallbMembers reads the memberlist members a MetalLB speaker process knows
// from its log: it logs every join and leave ("node event - forcing sync"),
// its own join included. self is counted in any case.
func metallbMembers(logPath, self string) ([]string, error) {
	f, err := os.Open(logPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	alive := map[string]bool{self: true}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if !strings.Contains(string(line), "node event - forcing sync") {
			continue
		}
		var ev struct {
			Name  string `json:"node name"`
			Event string `json:"node event"`
		}
		if err := json.Unmarshal(line, &ev); err != nil {
			continue // a line cut by a concurrent write: read again next time
		}
		switch ev.Event {
		case "NodeJoin":
			alive[ev.Name] = true
		case "NodeLeave":
			alive[ev.Name] = ev.Name == self
		}
	}
	var out []string
	for n, ok := range alive {
		if ok {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out, sc.Err()
}

// buildMetalLBSpeaker builds MetalLB's speaker once into the lab's binary
// cache (bench/metallb-speaker pins the module and the speaker's
// dependencies) and returns it and the folder of MetalLB's CRDs.
func buildMetalLBSpeaker(ctx context.Context, repo string) (bin, crds string, err error) {
	mod := filepath.Join(repo, "bench", "metallb-speaker")
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", "", err
	}
	bin = filepath.Join(cache, "ironlb", "bin", "metallb-speaker-"+metallbVersion)
	if _, err := os.Stat(bin); err != nil {
		say("building MetalLB's speaker (go.universe.tf/metallb %s) from the Go module proxy", metallbVersion)
		cmd := exec.CommandContext(ctx, "go", "build", "-mod=readonly", "-o", bin, "go.universe.tf/metallb/speaker")
		cmd.Dir = mod
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", "", fmt.Errorf("building MetalLB's speaker: %v\n%s", err, out)
		}
	}
	cmd := exec.CommandContext(ctx, "go", "list", "-mod=readonly", "-m", "-f", "{{.Dir}}", "go.universe.tf/metallb")
	cmd.Dir = mod
	out, err := cmd.Output()
	if err != nil {
		return "", "", fmt.Errorf("locating MetalLB's module: %w", err)
	}
	dir := strings.TrimSpace(string(out))
	if dir == "" {
		return "", "", errors.New("locating MetalLB's module: go list printed nothing")
	}
	return bin, filepath.Join(dir, "config", "crd", "bases"), nil
}
