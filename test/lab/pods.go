package lab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"time"
)

// Pod is a namespace attached to a node's pod bridge.
type Pod struct {
	Name string     // the name given to AddPod (the pod server answers with it)
	Host string     // lab host name "pod-<node>-<k>" (for Exec, Start, Netns)
	Node int        // node index
	IP   netip.Addr // 198.18.<node>.<k>
	IPv6 netip.Addr // 2001:db8:18:<node>::<k> when Spec.IPv6, else invalid
}

// AddPod creates namespace <prefix>-pod-<node>-<k> with a veth (eth0 inside,
// p<k> on the node, enslaved to the node's pod bridge), address
// 198.18.<node>.<k>/24 (and 2001:db8:18:<node>::<k>/64 with IPv6) and a
// default route via the node. k is 2..254.
func (l *Lab) AddPod(ctx context.Context, node, k int, name string) (_ Pod, err error) {
	if node < 1 || node > l.spec.Nodes {
		return Pod{}, fmt.Errorf("lab: no node %d", node)
	}
	if k < 2 || k > 254 {
		return Pod{}, fmt.Errorf("lab: pod index %d, want 2..254", k)
	}
	if name == "" {
		return Pod{}, errors.New("lab: pod needs a name")
	}
	host := fmt.Sprintf("pod-%d-%d", node, k)
	pod := Pod{
		Name: name,
		Host: host,
		Node: node,
		IP:   mustAddr(fmt.Sprintf("198.18.%d.%d", node, k)),
	}
	if l.spec.IPv6 {
		pod.IPv6 = mustAddr(fmt.Sprintf("2001:db8:18:%d::%d", node, k))
	}
	if err := l.addNetns(ctx, host); err != nil {
		if errors.Is(err, errHostExists) {
			return Pod{}, err
		}
		l.removePodNetns(host)
		return Pod{}, err
	}
	defer func() {
		if err != nil {
			l.removePodNetns(host)
		}
	}()
	nodeHost := l.NodeName(node)
	nodeIf := fmt.Sprintf("p%d", k)
	if err := l.ip(ctx, nodeHost, "link", "add", nodeIf, "type", "veth", "peer", "name", PodIf, "netns", l.Netns(host)); err != nil {
		return Pod{}, err
	}
	if err := l.ip(ctx, nodeHost, "link", "set", nodeIf, "master", PodsIf, "up"); err != nil {
		return Pod{}, err
	}
	if err := l.addAddr(ctx, host, PodIf, pod.IP, 24); err != nil {
		return Pod{}, err
	}
	if pod.IPv6.IsValid() {
		if err := l.addAddr(ctx, host, PodIf, pod.IPv6, 64); err != nil {
			return Pod{}, err
		}
	}
	if err := l.ip(ctx, host, "link", "set", PodIf, "up"); err != nil {
		return Pod{}, err
	}
	if err := l.addRoute(ctx, host, netip.Prefix{}, l.PodGateway(node)); err != nil {
		return Pod{}, err
	}
	if pod.IPv6.IsValid() {
		if err := l.addRoute(ctx, host, netip.Prefix{}, l.PodGatewayv6(node)); err != nil {
			return Pod{}, err
		}
	}
	l.mu.Lock()
	l.pods[host] = pod
	l.mu.Unlock()
	return pod, nil
}

// removePodNetns deletes a pod namespace made by a failed AddPod (its veth
// goes with it).
func (l *Lab) removePodNetns(host string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := removeNetns(ctx, l.Netns(host)); err != nil {
		l.logf("lab %s: remove %s: %v", l.prefix, host, err)
		return // keep it registered so Close retries
	}
	l.forget(host)
}

// Pods returns the pods added so far.
func (l *Lab) Pods() []Pod {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Pod, 0, len(l.pods))
	for _, p := range l.pods {
		out = append(out, p)
	}
	return out
}

// StartPodServer runs `binary --name <pod.Name> --listen :<port>` in the pod's
// namespace and waits (at most 15s, or ctx) until http://<pod.IP>:<port>/
// answers from the pod's node. The process is stopped by Close.
func (l *Lab) StartPodServer(ctx context.Context, pod Pod, binary string, port int) (*Process, error) {
	if port < 1 || port > 65535 {
		return nil, fmt.Errorf("lab: bad port %d", port)
	}
	logPath := filepath.Join(l.dir, pod.Host+"-server.log")
	p, err := l.Start(pod.Host, logPath, binary, "--name", pod.Name, "--listen", fmt.Sprintf(":%d", port))
	if err != nil {
		return nil, err
	}
	url := fmt.Sprintf("http://%s/", netip.AddrPortFrom(pod.IP, uint16(port)))
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	var lastErr error
	for {
		_, lastErr = l.HTTPGet(ctx, l.NodeName(pod.Node), url, time.Second)
		if lastErr == nil {
			return p, nil
		}
		select {
		case <-p.Done():
			return nil, fmt.Errorf("lab: pod server %s exited: %v: %s", pod.Name, p.Err(), tail(logPath, 2000))
		case <-ctx.Done():
			_ = p.Stop()
			return nil, fmt.Errorf("lab: pod server %s not answering at %s: %v (log: %s)", pod.Name, url, lastErr, tail(logPath, 2000))
		case <-time.After(100 * time.Millisecond):
		}
	}
}
