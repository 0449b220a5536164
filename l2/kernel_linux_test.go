//go:build linux

package l2

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// helperEnv makes the test binary run kernelHelper instead of the tests: the
// kernel test starts it under `ip netns exec`, so every socket and netlink
// subscription of the announcer lives in the test's namespace.
const helperEnv = "IRONLB_L2_KERNEL_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		os.Exit(kernelHelper(os.Stdin, os.Stdout))
	}
	os.Exit(m.Run())
}

// helperConflict is a Conflict as the helper prints it.
type helperConflict struct {
	VIP       netip.Addr
	Interface string
	TheirMAC  string
	Packet    string
}

// kernelHelper runs an Announcer on the real kernel and drives it by lines on
// in: "own VIP[@if,if] ..." (SetOwned; answers "ok" or "error MSG") and
// "status" (answers "status JSON"). It reports OnPlacement and OnConflict
// calls as "placement JSON" and "conflict JSON". It stops at the end of in.
func kernelHelper(in io.Reader, out io.Writer) int {
	var mu sync.Mutex
	emit := func(kind string, v any) {
		line := kind
		if v != nil {
			b, _ := json.Marshal(v)
			line += " " + string(b)
		}
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintln(out, line)
	}
	a, err := New(Config{
		GratuitousCount:    3,
		GratuitousInterval: 200 * time.Millisecond,
		ConflictInterval:   200 * time.Millisecond,
		OnPlacement:        func(p Placement) { emit("placement", p) },
		OnConflict: func(c Conflict) {
			emit("conflict", helperConflict{VIP: c.VIP, Interface: c.Interface, TheirMAC: c.TheirMAC.String(), Packet: c.Packet})
		},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = a.Run(ctx) }()
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "own":
			var anns []Announcement
			for _, arg := range f[1:] {
				vip, ifs, _ := strings.Cut(arg, "@")
				ann := Announcement{VIP: netip.MustParseAddr(vip)}
				if ifs != "" {
					ann.Interfaces = strings.Split(ifs, ",")
				}
				anns = append(anns, ann)
			}
			if err := a.SetOwned(ctx, anns); err != nil {
				emit("error", err.Error())
			} else {
				emit("ok", nil)
			}
		case "status":
			emit("status", a.Status())
		default:
			emit("error", "unknown command "+f[0])
		}
	}
	if err := a.Close(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// Addresses and names of the kernel test. The announcer's namespace ("ann")
// reaches the client's ("cli") over a veth pair (ann0 - cli0) and over a
// bridge br0 in ann whose port mem0 is a veth to mem0p in cli.
const (
	annMAC  = "02:00:5e:10:00:01"
	cliMAC  = "02:00:5e:10:00:02"
	brMAC   = "02:00:5e:10:00:0b"
	memMAC  = "02:00:5e:10:00:0c"
	memPeer = "02:00:5e:10:00:0d"
)

type kernelLab struct {
	ann, cli string // namespace names
}

func TestKernel(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("kernel test skipped: needs root (network namespaces, packet sockets)")
	}
	for _, tool := range []string{"ip", "arping", "ping"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("kernel test needs %s (Debian packages iproute2, arping, iputils-ping; see make deps)", tool)
		}
	}
	lab := newKernelLab(t)
	h := startHelper(t, lab.ann)

	vip4, vip4b := netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("192.0.2.11")
	vip6, vip6b := netip.MustParseAddr("2001:db8::10"), netip.MustParseAddr("2001:db8::11")

	// The client caches wrong MACs for the addresses the announcer will
	// take over, as after a failover; only a gratuitous burst corrects
	// them (Linux does not let gratuitous packets create entries).
	lab.run(t, lab.cli, "ip", "neigh", "replace", vip4b.String(), "lladdr", "02:00:5e:10:00:99", "dev", "cli0", "nud", "stale")
	lab.run(t, lab.cli, "ip", "-6", "neigh", "replace", vip6b.String(), "lladdr", "02:00:5e:10:00:99", "dev", "cli0", "nud", "stale")

	h.own(t, vip4.String(), vip6.String(), vip4b.String(), vip6b.String())

	t.Run("arping gets exactly the announcer's MAC", func(t *testing.T) {
		macs := lab.arping(t, "cli0", vip4, 3)
		if len(macs) == 0 || slices.ContainsFunc(macs, func(m string) bool { return m != annMAC }) {
			t.Fatalf("replies from %v, want only %s", macs, annMAC)
		}
	})

	t.Run("gratuitous burst updates the client's neighbour table", func(t *testing.T) {
		for _, vip := range []netip.Addr{vip4b, vip6b} {
			lab.eventually(t, fmt.Sprintf("the client's entry for %s to point at %s", vip, annMAC), func() (bool, string) {
				mac, state := lab.neighbour(t, "cli0", vip)
				return mac == annMAC, mac + " " + state
			})
		}
	})

	t.Run("NDP resolution", func(t *testing.T) {
		lab.run(t, lab.cli, "ip", "-6", "neigh", "flush", "dev", "cli0")
		// The echo is not answered (the VIP is not a local address in the
		// announcer's namespace); the neighbour resolution before it is.
		_ = lab.exec(lab.cli, "ping", "-6", "-n", "-c", "1", "-W", "1", vip6.String())
		lab.eventually(t, "the client to resolve "+vip6.String(), func() (bool, string) {
			mac, state := lab.neighbour(t, "cli0", vip6)
			return mac == annMAC && state != "INCOMPLETE" && state != "FAILED", mac + " " + state
		})
	})

	t.Run("unicast reachability probes are answered", func(t *testing.T) {
		// In PROBE state the client's kernel sends unicast ARP requests and
		// Neighbor Solicitations to the MAC it has; only an answer to
		// those makes the entry REACHABLE again.
		for _, vip := range []netip.Addr{vip4, vip6} {
			lab.run(t, lab.cli, "ip", "neigh", "replace", vip.String(), "lladdr", annMAC, "dev", "cli0", "nud", "probe")
			lab.eventually(t, vip.String()+" to be confirmed reachable", func() (bool, string) {
				mac, state := lab.neighbour(t, "cli0", vip)
				return mac == annMAC && state == "REACHABLE", mac + " " + state
			})
		}
	})

	t.Run("another MAC claiming a VIP is reported", func(t *testing.T) {
		_ = lab.exec(lab.cli, "arping", "-U", "-c", "1", "-i", "cli0", "-S", vip4.String(), vip4.String())
		c := h.conflict(t)
		if c.VIP != vip4 || c.TheirMAC != cliMAC || c.Interface != "ann0" {
			t.Fatalf("conflict %+v, want %s claimed by %s on ann0", c, vip4, cliMAC)
		}
	})

	t.Run("release stops the answers", func(t *testing.T) {
		h.own(t, vip6.String()) // the positive signal: SetOwned returned
		if macs := lab.arping(t, "cli0", vip4, 2); len(macs) != 0 {
			t.Fatalf("replies from %v after release", macs)
		}
		h.own(t)
		lab.run(t, lab.cli, "ip", "-6", "neigh", "flush", "dev", "cli0")
		_ = lab.exec(lab.cli, "ping", "-6", "-n", "-c", "1", "-W", "1", vip6.String())
		// FAILED is the kernel's own verdict after its solicitations went
		// unanswered: a positive signal for a negative fact.
		lab.eventually(t, vip6.String()+" to fail resolution", func() (bool, string) {
			mac, state := lab.neighbour(t, "cli0", vip6)
			return state == "FAILED" || state == "", mac + " " + state
		})
	})

	t.Run("bridge ports never answer, the bridge does", func(t *testing.T) {
		vip := netip.MustParseAddr("198.51.100.10")
		h.own(t, vip.String()+"@mem0")
		st := h.status(t)
		if len(st) != 1 || len(st[0].Interfaces) != 0 || !strings.Contains(st[0].Reason, "bridge") {
			t.Fatalf("status %+v, want %s unanswered because mem0 is a bridge port", st, vip)
		}
		if macs := lab.arping(t, "mem0p", vip, 2); len(macs) != 0 {
			t.Fatalf("replies from %v through a bridge port", macs)
		}
		h.own(t, vip.String())
		macs := lab.arping(t, "mem0p", vip, 3)
		if len(macs) == 0 || slices.ContainsFunc(macs, func(m string) bool { return m != brMAC }) {
			t.Fatalf("replies from %v, want only the bridge's %s (not the port's %s)", macs, brMAC, memMAC)
		}
	})

	t.Run("a link going down and up is followed", func(t *testing.T) {
		h.own(t, vip4.String())
		h.waitPlacement(t, vip4, "ann0")
		lab.run(t, lab.ann, "ip", "link", "set", "ann0", "down")
		h.waitPlacement(t, vip4, "")
		lab.run(t, lab.ann, "ip", "link", "set", "ann0", "up")
		h.waitPlacement(t, vip4, "ann0")
		lab.eventually(t, "answers after the link came back", func() (bool, string) {
			macs := lab.arping(t, "cli0", vip4, 1)
			return slices.Equal(macs, []string{annMAC}), strings.Join(macs, ",")
		})
	})
}

func newKernelLab(t *testing.T) *kernelLab {
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	id := "ilb" + hex.EncodeToString(b)
	lab := &kernelLab{ann: id + "-ann", cli: id + "-cli"}
	for _, ns := range []string{lab.ann, lab.cli} {
		if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
			t.Fatalf("ip netns add %s: %v: %s", ns, err, out)
		}
		t.Cleanup(func() {
			// Deleting the namespace removes its links; processes in it
			// were stopped by their own cleanup (registered later, run
			// earlier).
			if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
				t.Errorf("ip netns del %s: %v: %s", ns, err, out)
			}
		})
	}
	a, c := lab.ann, lab.cli
	for _, cmd := range [][]string{
		{a, "ip", "link", "set", "lo", "up"},
		{c, "ip", "link", "set", "lo", "up"},
		// Links are created inside the namespaces, never in the root one.
		{a, "ip", "link", "add", "ann0", "address", annMAC, "type", "veth", "peer", "name", "cli0", "address", cliMAC, "netns", c},
		{a, "ip", "addr", "add", "192.0.2.1/24", "dev", "ann0"},
		{a, "ip", "addr", "add", "2001:db8::1/64", "dev", "ann0", "nodad"},
		{c, "ip", "addr", "add", "192.0.2.2/24", "dev", "cli0"},
		{c, "ip", "addr", "add", "2001:db8::2/64", "dev", "cli0", "nodad"},
		{a, "ip", "link", "add", "br0", "address", brMAC, "type", "bridge"},
		{a, "ip", "link", "add", "mem0", "address", memMAC, "type", "veth", "peer", "name", "mem0p", "address", memPeer, "netns", c},
		{a, "ip", "link", "set", "mem0", "master", "br0"},
		{a, "ip", "addr", "add", "198.51.100.1/24", "dev", "br0"},
		{c, "ip", "addr", "add", "198.51.100.2/24", "dev", "mem0p"},
		{a, "ip", "link", "set", "ann0", "up"},
		{a, "ip", "link", "set", "mem0", "up"},
		{a, "ip", "link", "set", "br0", "up"},
		{c, "ip", "link", "set", "cli0", "up"},
		{c, "ip", "link", "set", "mem0p", "up"},
	} {
		lab.run(t, cmd[0], cmd[1:]...)
	}
	// A Linux host ignores Neighbor Advertisements on a link whose IPv6
	// is still starting up (link-local address tentative); a real client's
	// link has long been up. Wait until it is.
	for _, nl := range [][2]string{{c, "cli0"}, {a, "ann0"}} {
		lab.eventually(t, "IPv6 to settle on "+nl[1], func() (bool, string) {
			out := lab.run(t, nl[0], "ip", "-j", "-6", "addr", "show", "dev", nl[1], "scope", "link")
			return strings.Contains(out, "fe80") && !strings.Contains(out, "tentative"), out
		})
	}
	return lab
}

// exec runs argv inside namespace ns, bounded to 30s, and returns its output
// and error.
func (l *kernelLab) execOut(ns string, argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns}, argv...)...).CombinedOutput()
	return string(out), err
}

func (l *kernelLab) exec(ns string, argv ...string) error {
	_, err := l.execOut(ns, argv...)
	return err
}

func (l *kernelLab) run(t *testing.T, ns string, argv ...string) string {
	t.Helper()
	out, err := l.execOut(ns, argv...)
	if err != nil {
		t.Fatalf("%s in %s: %v: %s", strings.Join(argv, " "), ns, err, out)
	}
	return out
}

var arpingReply = regexp.MustCompile(`from ([0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}) \(`)

// arping sends count ARP requests for ip from the client's link ifname,
// 250ms apart, and returns the MAC of every reply.
func (l *kernelLab) arping(t *testing.T, ifname string, ip netip.Addr, count int) []string {
	t.Helper()
	deadline := fmt.Sprint(count/4 + 2)
	out, err := l.execOut(l.cli, "arping", "-c", fmt.Sprint(count), "-W", "0.25", "-w", deadline, "-i", ifname, ip.String())
	var macs []string
	for _, m := range arpingReply.FindAllStringSubmatch(out, -1) {
		macs = append(macs, strings.ToLower(m[1]))
	}
	var ee *exec.ExitError
	if err != nil && !(errors.As(err, &ee) && ee.ExitCode() == 1 && len(macs) == 0) {
		t.Fatalf("arping: %v: %s", err, out)
	}
	return macs
}

// neighbour returns the client's cached MAC and NUD state for ip on ifname;
// empty strings when there is no entry.
func (l *kernelLab) neighbour(t *testing.T, ifname string, ip netip.Addr) (mac, state string) {
	t.Helper()
	out := l.run(t, l.cli, "ip", "-j", "neigh", "show", ip.String(), "dev", ifname)
	var entries []struct {
		LLAddr string   `json:"lladdr"`
		State  []string `json:"state"`
	}
	if err := json.Unmarshal([]byte(out), &entries); err != nil {
		t.Fatalf("ip -j neigh: %v: %s", err, out)
	}
	if len(entries) == 0 {
		return "", ""
	}
	return strings.ToLower(entries[0].LLAddr), strings.Join(entries[0].State, ",")
}

// eventually polls cond every 100ms for up to 20s.
func (l *kernelLab) eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s (last: %s)", what, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// helper is the announcer process inside the announcer's namespace.
type helper struct {
	stdin      io.WriteCloser
	replies    chan string
	placements chan Placement
	conflicts  chan helperConflict
}

func startHelper(t *testing.T, ns string) *helper {
	t.Helper()
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", ns, bin)
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var stderr syncBuffer
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &helper{stdin: stdin, replies: make(chan string, 16), placements: make(chan Placement, 64), conflicts: make(chan helperConflict, 64)}
	exited := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			kind, body, _ := strings.Cut(sc.Text(), " ")
			switch kind {
			case "placement":
				var p Placement
				if json.Unmarshal([]byte(body), &p) == nil {
					h.placements <- p
				}
			case "conflict":
				var c helperConflict
				if json.Unmarshal([]byte(body), &c) == nil {
					h.conflicts <- c
				}
			default:
				h.replies <- sc.Text()
			}
		}
		exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = stdin.Close() // the helper stops at the end of its input
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("announcer helper: %v; stderr:\n%s", err, stderr.String())
			}
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			t.Errorf("announcer helper did not stop; killed. stderr:\n%s", stderr.String())
		}
		if t.Failed() {
			t.Logf("announcer helper stderr:\n%s", stderr.String())
		}
	})
	return h
}

func (h *helper) do(t *testing.T, line string) string {
	t.Helper()
	if _, err := io.WriteString(h.stdin, line+"\n"); err != nil {
		t.Fatalf("helper: %v", err)
	}
	select {
	case r := <-h.replies:
		return r
	case <-time.After(20 * time.Second):
		t.Fatalf("helper did not answer %q", line)
		return ""
	}
}

func (h *helper) own(t *testing.T, vips ...string) {
	t.Helper()
	if r := h.do(t, strings.Join(append([]string{"own"}, vips...), " ")); r != "ok" {
		t.Fatalf("own %v: %s", vips, r)
	}
}

func (h *helper) status(t *testing.T) []Placement {
	t.Helper()
	r := h.do(t, "status")
	body, ok := strings.CutPrefix(r, "status ")
	var st []Placement
	if !ok || json.Unmarshal([]byte(body), &st) != nil {
		t.Fatalf("status: %s", r)
	}
	return st
}

func (h *helper) conflict(t *testing.T) helperConflict {
	t.Helper()
	return receive(t, h.conflicts, "conflict report")
}

// waitPlacement waits for a placement of vip on ifname ("" for nowhere).
func (h *helper) waitPlacement(t *testing.T, vip netip.Addr, ifname string) {
	t.Helper()
	want := []string{}
	if ifname != "" {
		want = []string{ifname}
	}
	deadline := time.After(20 * time.Second)
	for {
		select {
		case p := <-h.placements:
			if p.VIP == vip && slices.Equal(append([]string{}, p.Interfaces...), want) {
				return
			}
		case <-deadline:
			t.Fatalf("no placement of %s on %q", vip, ifname)
		}
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
