package framework

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/ironlb/ironlb/test/lab"
)

// KubeProxyHealthzPort and KubeProxyMetricsPort are where the lab's
// kube-proxies serve /healthz and /metrics, on their node's LAN address.
const (
	KubeProxyHealthzPort = 10256
	KubeProxyMetricsPort = 10249
)

// StartKubeProxyMode runs a real kube-proxy (built from the same
// k8s.io/kubernetes version as the API server) on lab node i in mode
// "iptables" or "nftables" (which needs the nft command, Debian package
// nftables), as user system:kube-proxy, with the lab's pod networks as cluster
// CIDRs and any extra flags appended. It returns once /healthz answers (the
// first sync is done), at most within.
func (e *Env) StartKubeProxyMode(ctx context.Context, i int, mode string, within time.Duration, extra ...string) (*lab.Process, error) {
	switch mode {
	case "iptables":
	case "nftables":
		if _, err := exec.LookPath("nft"); err != nil {
			return nil, errors.New("kube-proxy --proxy-mode=nftables needs nft: apt-get install nftables")
		}
	default:
		return nil, fmt.Errorf("kube-proxy mode %q: want iptables or nftables", mode)
	}
	if e.Bins.KubeProxy == "" {
		return nil, errors.New("kube-proxy binary not built (cluster.EnsureBinaries)")
	}
	kc, err := e.Cluster.ClientCertKubeconfig(fmt.Sprintf("kube-proxy-%s-%d", mode, i), "system:kube-proxy", nil)
	if err == nil {
		kc, err = e.lanKubeconfig(kc)
	}
	if err != nil {
		return nil, err
	}
	host, ip := e.Lab.NodeName(i), e.Lab.NodeIP(i)
	cidrs := "198.18.0.0/16"
	if e.Lab.Spec().IPv6 {
		cidrs += ",2001:db8:18::/48"
	}
	args := append([]string{e.Bins.KubeProxy,
		"--kubeconfig=" + kc,
		"--hostname-override=" + host,
		"--proxy-mode=" + mode,
		"--cluster-cidr=" + cidrs,
		"--healthz-bind-address=" + netip.AddrPortFrom(ip, KubeProxyHealthzPort).String(),
		"--metrics-bind-address=" + netip.AddrPortFrom(ip, KubeProxyMetricsPort).String(),
		// Conntrack sysctls are the host's business, not the lab's.
		"--conntrack-max-per-core=0",
		"--conntrack-tcp-timeout-established=0",
		"--conntrack-tcp-timeout-close-wait=0",
		"--v=1",
	}, extra...)
	p, err := e.Lab.Start(host, filepath.Join(e.Lab.Dir(), fmt.Sprintf("%s-kube-proxy-%s.log", host, mode)), args...)
	if err != nil {
		return nil, err
	}
	e.track(p.Pid())
	wctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	url := "http://" + netip.AddrPortFrom(ip, KubeProxyHealthzPort).String() + "/healthz"
	for {
		if _, err := e.Lab.HTTPGet(wctx, host, url, time.Second); err == nil {
			return p, nil
		}
		select {
		case <-p.Done():
			return nil, fmt.Errorf("kube-proxy on %s exited: %v: %s", host, p.Err(), p.Tail(3000))
		case <-wctx.Done():
			_ = p.Stop()
			return nil, fmt.Errorf("kube-proxy (%s) on %s not healthy within %v: %s", mode, host, within, p.Tail(3000))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// KubeProxyMetrics fetches the /metrics text of the kube-proxy on node i.
func (e *Env) KubeProxyMetrics(ctx context.Context, i int) (string, error) {
	url := "http://" + netip.AddrPortFrom(e.Lab.NodeIP(i), KubeProxyMetricsPort).String() + "/metrics"
	return e.Lab.HTTPGet(ctx, e.Lab.NodeName(i), url, 10*time.Second)
}
