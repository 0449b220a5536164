package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// needRoot skips with one line unless the lab can run here.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("lab: skipped, needs root (network namespaces)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("lab: skipped, iproute2 (ip) missing")
	}
}

func need(t *testing.T, bins ...string) {
	t.Helper()
	for _, b := range bins {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("lab: skipped, %s missing", b)
		}
	}
}

type tlog struct{ t *testing.T }

func (w tlog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// podServerBinary builds test/tools/podserver into the test's temporary directory.
func podServerBinary(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "podserver")
	cmd := exec.Command("go", "build", "-o", bin, "../tools/podserver")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building tools/podserver: %v: %s", err, out)
	}
	return bin
}

func TestCheckAddr(t *testing.T) {
	for _, s := range []string{"192.0.2.1", "198.51.100.10", "203.0.113.5", "198.18.1.2", "198.19.0.1", "2001:db8::1", "2001:db8:1::5"} {
		if err := CheckAddr(netip.MustParseAddr(s)); err != nil {
			t.Errorf("CheckAddr(%s) = %v, want nil", s, err)
		}
	}
	for _, s := range []string{"10.0.0.1", "192.168.1.1", "8.8.8.8", "192.0.3.1", "198.20.0.1", "fd00::1", "2001:db9::1", "127.0.0.1"} {
		if err := CheckAddr(netip.MustParseAddr(s)); err == nil {
			t.Errorf("CheckAddr(%s) = nil, want error", s)
		}
	}
	if err := CheckPrefix(netip.MustParsePrefix("198.18.0.0/14")); err == nil {
		t.Error("CheckPrefix(198.18.0.0/14) = nil, want error")
	}
	if err := CheckPrefix(netip.MustParsePrefix("203.0.113.0/24")); err != nil {
		t.Errorf("CheckPrefix(203.0.113.0/24) = %v", err)
	}
	if err := CleanupPrefix(context.Background(), ""); err == nil {
		t.Error("CleanupPrefix(\"\") = nil, want refusal")
	}
	if err := CleanupPrefix(context.Background(), "i"); err == nil {
		t.Error("CleanupPrefix(\"i\") = nil, want refusal")
	}
}

func TestDefaultFRRConfig(t *testing.T) {
	l := &Lab{spec: Spec{Nodes: 2, IPv6: true}}
	c := DefaultFRRConfig(l, 0)
	for _, want := range []string{
		"frr defaults datacenter", "router bgp 64512", "no bgp ebgp-requires-policy",
		"neighbor 192.0.2.11 remote-as 64600", "neighbor 192.0.2.12 remote-as 64600",
		"neighbor 2001:db8::12 remote-as 64600", "maximum-paths 8",
		"address-family ipv6 unicast", "neighbor 2001:db8::11 activate",
	} {
		if !strings.Contains(c, want) {
			t.Errorf("config lacks %q:\n%s", want, c)
		}
	}
	if c := DefaultFRRConfig(l, 64513, netip.MustParseAddr("10.1.1.1")); strings.Contains(c, "10.1.1.1") {
		t.Errorf("config has a peer outside the lab ranges:\n%s", c)
	}
}

func TestLab(t *testing.T) {
	needRoot(t)
	need(t, "ping", "arping", "curl", "vtysh", "/usr/lib/frr/bgpd", "go")
	bin := podServerBinary(t)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	start := time.Now()
	l, err := New(ctx, Spec{Nodes: 3, IPv6: true, Router: true, Log: tlog{t}})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Logf("lab %s built in %s", l.Prefix(), time.Since(start).Round(time.Millisecond))
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})

	t.Run("ping", func(t *testing.T) {
		if out, err := l.Exec(ctx, HostLANClient, "ping", "-n", "-c1", "-W1", l.NodeIP(1).String()); err != nil {
			t.Fatalf("lanclient -> node1: %v\n%s", err, out)
		}
		if err := l.Ping(ctx, HostLANClient, l.NodeIPv6(1), 1); err != nil {
			t.Errorf("lanclient -> node1 IPv6: %v", err)
		}
		// client -> node1 through the router (node's default route is the router).
		if err := l.Ping(ctx, HostClient, l.NodeIP(1), 1); err != nil {
			t.Errorf("client -> node1 via router: %v", err)
		}
		if err := l.Ping(ctx, HostClient, l.NodeIPv6(1), 1); err != nil {
			t.Errorf("client -> node1 via router (IPv6): %v", err)
		}
	})

	t.Run("arping", func(t *testing.T) {
		want, err := l.MAC(l.NodeName(2), LANIf)
		if err != nil {
			t.Fatal(err)
		}
		macs, err := l.ARPing(ctx, HostLANClient, l.NodeIP(2), 2)
		if err != nil {
			t.Fatal(err)
		}
		if len(macs) != 1 || macs[0] != want {
			t.Fatalf("ARPing node2 = %v, want [%s]", macs, want)
		}
		// Nobody has 192.0.2.250: no reply, no error.
		macs, err = l.ARPing(ctx, HostLANClient, netip.MustParseAddr("192.0.2.250"), 1)
		if err != nil || len(macs) != 0 {
			t.Fatalf("ARPing unused address = %v, %v; want none", macs, err)
		}
	})

	var pod Pod
	var podProc *Process
	t.Run("pod", func(t *testing.T) {
		pod, err = l.AddPod(ctx, 1, 2, "web-1")
		if err != nil {
			t.Fatal(err)
		}
		podProc, err = l.StartPodServer(ctx, pod, bin, 8080)
		if err != nil {
			t.Fatal(err)
		}
		for _, ip := range []netip.Addr{pod.IP, pod.IPv6} {
			url := fmt.Sprintf("http://%s/", netip.AddrPortFrom(ip, 8080))
			body, err := l.HTTPGet(ctx, l.NodeName(2), url, 3*time.Second)
			if err != nil {
				t.Fatalf("node2 -> %s: %v", url, err)
			}
			if !strings.HasPrefix(body, "web-1 ") {
				t.Fatalf("node2 -> %s: body %q, want web-1 ...", url, body)
			}
			t.Logf("node2 -> %s: %q", url, strings.TrimSpace(body))
		}
		if _, err := l.AddPod(ctx, 1, 2, "dup"); err == nil {
			t.Error("second AddPod(1, 2) succeeded")
		}
	})

	var bird *Process
	t.Run("frr", func(t *testing.T) {
		t0 := time.Now()
		if err := l.StartFRR(ctx, DefaultFRRConfig(l, RouterASN)); err != nil {
			t.Fatal(err)
		}
		t.Logf("FRR up in %s", time.Since(t0).Round(time.Millisecond))
		out, err := l.Vtysh(ctx, "show bgp summary json")
		if err != nil {
			t.Fatal(err)
		}
		var sum map[string]any
		if err := json.Unmarshal([]byte(out), &sum); err != nil {
			t.Fatalf("show bgp summary json: %v: %q", err, out)
		}
		if _, ok := sum["ipv4Unicast"]; !ok {
			t.Errorf("show bgp summary json lacks ipv4Unicast: %s", out)
		}
		routes, err := l.RouterRoutesDetail(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if r := routes["192.0.2.0/24"]; r.Protocol != "connected" {
			t.Errorf("router route 192.0.2.0/24 = %+v, want connected", r)
		}

		// A real peer: BIRD in node1 announces 203.0.113.10/32; the router
		// must install it via node1.
		birdConf := fmt.Sprintf(`router id %s;
protocol device {}
protocol static { ipv4; route 203.0.113.10/32 blackhole; }
protocol bgp uplink {
  local %s as %d;
  neighbor %s as %d;
  ipv4 { import none; export all; };
}
`, l.NodeIP(1), l.NodeIP(1), NodeASN, l.RouterLANAddr(), RouterASN)
		var err2 error
		if bird, err2 = l.StartBIRD(ctx, l.NodeName(1), birdConf); err2 != nil {
			t.Fatalf("%v (bird2 is installed by `make deps`)", err2)
		}
		if out, err := l.Birdc(ctx, l.NodeName(1), "show protocols"); err != nil || !strings.Contains(out, "uplink") {
			t.Errorf("birdc show protocols: %q %v", out, err)
		}
		t0 = time.Now()
		deadline := time.Now().Add(45 * time.Second)
		for {
			routes, err := l.RouterRoutes(ctx)
			if err == nil && strings.Join(routes["203.0.113.10/32"], ",") == l.NodeIP(1).String() {
				t.Logf("router installed 203.0.113.10/32 via %s after %s", l.NodeIP(1), time.Since(t0).Round(time.Millisecond))
				break
			}
			if time.Now().After(deadline) {
				sum, _ := l.Vtysh(ctx, "show bgp summary")
				t.Fatalf("router has no 203.0.113.10/32 via node1: %v %v\n%s\nbird log: %s", routes["203.0.113.10/32"], err, sum, tail(bird.LogPath(), 1000))
			}
			time.Sleep(200 * time.Millisecond)
		}
		if out, err := l.Exec(ctx, HostRouter, "ip", "route", "show", "203.0.113.10"); err != nil || !strings.Contains(out, "via "+l.NodeIP(1).String()) {
			t.Errorf("kernel route in router: %q %v", out, err)
		}
	})

	t.Run("isolation", func(t *testing.T) {
		// Root namespace: only the management /30 points into the lab. This
		// machine's own network may use 192.0.2.0/24 (it does here: eth0), so
		// a lookup for a lab address may succeed, but never via a lab link.
		link := l.MgmtLink()
		for _, dst := range []string{l.NodeIP(1).String(), pod.IP.String(), l.ClientAddr().String(), "203.0.113.10", l.NodeIPv6(1).String()} {
			out, err := run(ctx, "ip", "route", "get", dst) // a lookup, sends nothing
			if err == nil && strings.Contains(out, "dev "+link) {
				t.Errorf("root namespace routes %s into the lab: %s", dst, out)
			}
			t.Logf("root: ip route get %s: %s", dst, strings.TrimSpace(firstLine(out)))
		}
		for _, fam := range []string{"-4", "-6"} {
			out, err := runSplit(ctx, "ip", "-j", fam, "route", "show", "table", "all")
			if err != nil {
				t.Fatal(err)
			}
			var routes []struct{ Dst, Dev, Type string }
			if err := json.Unmarshal([]byte(out), &routes); err != nil {
				t.Fatal(err)
			}
			mgmt := netip.PrefixFrom(l.MgmtRootAddr(), 30).Masked()
			for _, r := range routes {
				if !strings.HasPrefix(r.Dev, l.Prefix()) {
					continue
				}
				// Only the connected /30 (and its local/broadcast entries).
				dst, err := netip.ParsePrefix(r.Dst)
				if err != nil {
					if a, err2 := netip.ParseAddr(r.Dst); err2 == nil {
						dst = netip.PrefixFrom(a, a.BitLen())
					}
				}
				if !dst.IsValid() || dst.Bits() < 30 || !mgmt.Contains(dst.Addr()) {
					t.Errorf("root route %+v uses a lab link", r)
				}
			}
		}
		// Reachability over the management link from the root namespace is
		// the one allowed path: a lookup only.
		if out, err := run(ctx, "ip", "route", "get", l.MgmtCPAddr().String()); err != nil || !strings.Contains(out, "dev "+link) {
			t.Errorf("root: route to cp's management address: %q %v", out, err)
		}
		// No lab namespace routes anything via the management range, and only
		// cp has the management /30.
		for _, h := range l.Hosts() {
			out, err := l.Exec(ctx, h, "ip", "-4", "route", "show", "table", "all")
			if err != nil {
				t.Fatal(err)
			}
			for _, line := range strings.Split(out, "\n") {
				if strings.Contains(line, "via 198.18.25") {
					t.Errorf("%s: route via the management range: %s", h, line)
				}
				if h != HostCP && strings.Contains(line, MgmtIf) {
					t.Errorf("%s: management route: %s", h, line)
				}
			}
		}
		if out, _ := l.Exec(ctx, HostCP, "ip", "route", "show", "default"); strings.TrimSpace(out) != "" {
			t.Errorf("cp has a default route: %s", out)
		}
	})

	t.Run("close", func(t *testing.T) {
		pids := []int{}
		if podProc != nil {
			pids = append(pids, podProc.Pid())
		}
		if bird != nil {
			pids = append(pids, bird.Pid())
		}
		l.mu.Lock()
		for _, p := range l.procs {
			pids = append(pids, p.Pid())
		}
		l.mu.Unlock()
		dir := l.Dir()
		t0 := time.Now()
		if err := l.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		t.Logf("lab closed in %s (%d processes)", time.Since(t0).Round(time.Millisecond), len(pids))
		if err := l.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
		assertGone(t, l.Prefix())
		for _, pid := range pids {
			if processAlive(pid) {
				t.Errorf("process %d survives Close", pid)
			}
		}
		if _, err := os.Stat(filepath.Join(frrRunDir, l.Netns(HostRouter))); err == nil {
			t.Errorf("FRR runtime dir survives Close")
		}
		if _, err := os.Stat(dir); err == nil {
			t.Errorf("lab dir %s survives Close", dir)
		}
		if _, err := l.Exec(ctx, HostCP, "true"); err == nil {
			t.Error("Exec after Close succeeded")
		}
	})
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// assertGone checks that no namespace and no root link with prefix remain.
func assertGone(t *testing.T, prefix string) {
	t.Helper()
	ctx := context.Background()
	names, err := listNetns(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if strings.HasPrefix(n, prefix) {
			t.Errorf("namespace %s remains", n)
		}
	}
	links, err := rootLinks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range links {
		if strings.HasPrefix(n, prefix) {
			t.Errorf("root link %s remains", n)
		}
	}
}

// TestCleanupPrefix leaks a small lab (never closed) plus a hand-made
// namespace, root link and process, and removes them all with CleanupPrefix.
func TestCleanupPrefix(t *testing.T) {
	needRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	l, err := New(ctx, Spec{Nodes: 1, Router: true, Log: tlog{t}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("small lab built in %s", time.Since(start).Round(time.Millisecond))
	prefix := l.Prefix()
	t.Cleanup(func() {
		_ = l.Close() // must cope with everything being gone already
		_ = CleanupPrefix(context.Background(), prefix)
	})
	// A process started by the lab, and one started behind its back.
	p, err := l.Start(l.NodeName(1), "", "sleep", "300")
	if err != nil {
		t.Fatal(err)
	}
	leak := prefix + "-leaked"
	if _, err := run(ctx, "ip", "netns", "add", leak); err != nil {
		t.Fatal(err)
	}
	// A root-namespace veth pair without addresses, as a crashed run leaves.
	if _, err := run(ctx, "ip", "link", "add", prefix+"-x", "type", "veth", "peer", "name", prefix+"-y"); err != nil {
		t.Fatal(err)
	}
	orphan := exec.Command("ip", "netns", "exec", leak, "sleep", "300")
	orphan.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := orphan.Start(); err != nil {
		t.Fatal(err)
	}
	orphanDone := make(chan struct{})
	go func() { _ = orphan.Wait(); close(orphanDone) }()
	defer func() { _ = syscall.Kill(-orphan.Process.Pid, syscall.SIGKILL) }()
	time.Sleep(100 * time.Millisecond)

	t0 := time.Now()
	if err := CleanupPrefix(ctx, prefix); err != nil {
		t.Fatalf("CleanupPrefix: %v", err)
	}
	t.Logf("CleanupPrefix(%s) took %s", prefix, time.Since(t0).Round(time.Millisecond))
	assertGone(t, prefix)
	select {
	case <-orphanDone:
	case <-time.After(5 * time.Second):
		t.Error("process in the leaked namespace survives CleanupPrefix")
	}
	select {
	case <-p.Done():
	case <-time.After(5 * time.Second):
		t.Error("lab process survives CleanupPrefix")
	}
	if err := l.Close(); err != nil {
		t.Errorf("Close after CleanupPrefix: %v", err)
	}
}

// TestNewFailureCleansUp makes New fail after everything was built and
// checks that nothing is left behind.
func TestNewFailureCleansUp(t *testing.T) {
	needRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var prefix string
	var sleeper *Process
	buildHook = func(l *Lab) error {
		prefix = l.Prefix()
		var err error
		if sleeper, err = l.Start(l.NodeName(1), "", "sleep", "300"); err != nil {
			return err
		}
		return fmt.Errorf("injected failure")
	}
	defer func() { buildHook = nil }()
	l, err := New(ctx, Spec{Nodes: 2, IPv6: true, Router: true, Log: tlog{t}})
	if err == nil || !strings.Contains(err.Error(), "injected failure") {
		t.Fatalf("New = %v, %v; want the injected failure", l, err)
	}
	if prefix == "" {
		t.Fatal("hook did not run")
	}
	assertGone(t, prefix)
	if processAlive(sleeper.Pid()) {
		t.Errorf("process %d survives the failed New", sleeper.Pid())
	}
}

// TestTwoLabs builds two labs at once: they get distinct prefixes and
// management /30s, and each cp is reachable from its own lab only.
func TestTwoLabs(t *testing.T) {
	needRoot(t)
	need(t, "ping")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	labs := make([]*Lab, 2)
	errs := make(chan error, 2)
	for i := range labs {
		go func() {
			var err error
			labs[i], err = New(ctx, Spec{Nodes: 1, Log: tlog{t}})
			errs <- err
		}()
	}
	for range labs {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	for _, l := range labs {
		if l != nil {
			t.Cleanup(func() { _ = l.Close() })
		}
	}
	if t.Failed() {
		return
	}
	a, b := labs[0], labs[1]
	if a.Prefix() == b.Prefix() || a.MgmtRootAddr() == b.MgmtRootAddr() {
		t.Fatalf("labs share prefix or management /30: %s %s / %s %s", a.Prefix(), a.MgmtRootAddr(), b.Prefix(), b.MgmtRootAddr())
	}
	t.Logf("lab %s mgmt %s, lab %s mgmt %s", a.Prefix(), a.MgmtCPAddr(), b.Prefix(), b.MgmtCPAddr())
	for _, l := range labs {
		if err := l.Ping(ctx, l.NodeName(1), l.CPAddr(), 1); err != nil {
			t.Errorf("%s: node1 -> cp: %v", l.Prefix(), err)
		}
	}
	for _, l := range labs {
		if err := l.Close(); err != nil {
			t.Errorf("Close %s: %v", l.Prefix(), err)
		}
		assertGone(t, l.Prefix())
	}
}
