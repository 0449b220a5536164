// Package nslab builds the small network-namespace world the real tests of
// packages bgp and bgp/bfd run in: a router namespace (FRR or BIRD), a node
// namespace (the code under test, in a re-executed test binary) and a switch
// namespace with a bridge between them, so that cutting the node's link is
// silent for the router, as when a node dies.
//
//	router  r0  192.0.2.1/24   2001:db8::1/64, and 192.0.2.2-9/24 (one per extra session)
//	node    n0  192.0.2.11/24  2001:db8::11/64, and 192.0.2.12-19/24 (extra source addresses)
//	switch  br0 with ports r (router) and n (node)
//
// Safety (LAB.md): namespaces are named ilb<6 hex>-<role>, links are created
// inside them (nothing in the root namespace), only 192.0.2.0/24,
// 198.18.0.0/15, 203.0.113.0/24 and 2001:db8::/32 are used, every process
// gets Pdeathsig and its own process group, and t.Cleanup kills the process
// groups and deletes the namespaces also when a test fails. FRR's daemons
// drop privileges to user frr, which clears Pdeathsig: if the test binary
// dies without running its cleanups (a -timeout panic), they outlive it, and
// "make lab-clean" removes only the namespaces. It is test support only.
package nslab

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Addresses of the lab.
var (
	RouterIP  = netip.MustParseAddr("192.0.2.1")
	RouterIP6 = netip.MustParseAddr("2001:db8::1")
	NodeIP    = netip.MustParseAddr("192.0.2.11")
	NodeIP6   = netip.MustParseAddr("2001:db8::11")
)

// NodeExtraIP returns the i-th extra node address, 192.0.2.(11+i) for i in
// 1..8, for sessions that need their own source address.
func NodeExtraIP(i int) netip.Addr {
	if i < 1 || i > 8 {
		panic("nslab: extra node address index out of 1..8")
	}
	return netip.AddrFrom4([4]byte{192, 0, 2, byte(11 + i)})
}

// RouterExtraIP returns the i-th extra router address, 192.0.2.(1+i) for i
// in 1..8: a second session between the same two hosts needs its own pair of
// addresses, since sessions are keyed by the router's address.
func RouterExtraIP(i int) netip.Addr {
	if i < 1 || i > 8 {
		panic("nslab: extra router address index out of 1..8")
	}
	return netip.AddrFrom4([4]byte{192, 0, 2, byte(1 + i)})
}

// Interface names.
const (
	RouterIf     = "r0"
	NodeIf       = "n0"
	SwitchNodeIf = "swn" // the switch's port toward the node
)

// Require skips the test with one line unless it can build namespaces.
func Require(t testing.TB, tools ...string) {
	t.Helper()
	if runtime.GOOS != "linux" || os.Geteuid() != 0 {
		t.Skip("skipped: needs Linux and root (network namespaces)")
	}
	for _, tool := range append([]string{"ip"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("skipped: %s not installed", tool)
		}
	}
}

// Lab is one test's namespaces and processes.
type Lab struct {
	t      testing.TB
	Prefix string
	Router string // namespace names
	Node   string
	Switch string
	Dir    string // configuration and logs, readable by user frr

	mu    sync.Mutex
	procs []*Process
}

// New builds the namespaces and links; t.Cleanup removes them.
func New(t testing.TB) *Lab {
	t.Helper()
	Require(t)
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	p := "ilb" + hex.EncodeToString(b[:])
	dir, err := os.MkdirTemp("", p+"-")
	if err != nil {
		t.Fatal(err)
	}
	l := &Lab{t: t, Prefix: p, Router: p + "-r", Node: p + "-n", Switch: p + "-s", Dir: dir}
	t.Cleanup(l.cleanup)
	// FRR's daemons, running as user frr, write pid files and logs here.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if u, err := user.Lookup("frr"); err == nil {
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		_ = os.Chown(dir, uid, gid)
	}
	var cmds [][]string
	for _, ns := range []string{l.Switch, l.Router, l.Node} {
		cmds = append(cmds, []string{"ip", "netns", "add", ns}, []string{"ip", "-n", ns, "link", "set", "lo", "up"})
	}
	cmds = append(cmds,
		[]string{"ip", "-n", l.Switch, "link", "add", "br0", "type", "bridge"},
		[]string{"ip", "-n", l.Switch, "link", "set", "br0", "up"},
		[]string{"ip", "-n", l.Router, "link", "add", RouterIf, "type", "veth", "peer", "name", "swr", "netns", l.Switch},
		[]string{"ip", "-n", l.Node, "link", "add", NodeIf, "type", "veth", "peer", "name", SwitchNodeIf, "netns", l.Switch},
	)
	for _, port := range []string{"swr", SwitchNodeIf} {
		cmds = append(cmds, []string{"ip", "-n", l.Switch, "link", "set", port, "master", "br0", "up"})
	}
	cmds = append(cmds,
		[]string{"ip", "-n", l.Router, "addr", "add", "192.0.2.1/24", "dev", RouterIf},
		[]string{"ip", "-n", l.Router, "addr", "add", "2001:db8::1/64", "dev", RouterIf, "nodad"},
		[]string{"ip", "-n", l.Router, "link", "set", RouterIf, "up"},
		[]string{"ip", "-n", l.Node, "addr", "add", "192.0.2.11/24", "dev", NodeIf},
		[]string{"ip", "-n", l.Node, "addr", "add", "2001:db8::11/64", "dev", NodeIf, "nodad"},
		[]string{"ip", "-n", l.Node, "link", "set", NodeIf, "up"},
	)
	for i := 1; i <= 8; i++ {
		cmds = append(cmds,
			[]string{"ip", "-n", l.Node, "addr", "add", NodeExtraIP(i).String() + "/24", "dev", NodeIf},
			[]string{"ip", "-n", l.Router, "addr", "add", RouterExtraIP(i).String() + "/24", "dev", RouterIf})
	}
	for _, c := range cmds {
		if _, err := Run(context.Background(), c...); err != nil {
			t.Fatal(err)
		}
	}
	return l
}

// Cut takes the node's switch port down: the router keeps its carrier and
// hears nothing more from the node, as when the node loses power.
func (l *Lab) Cut() error {
	_, err := Run(context.Background(), "ip", "-n", l.Switch, "link", "set", SwitchNodeIf, "down")
	return err
}

// Mend brings the node's switch port back up.
func (l *Lab) Mend() error {
	_, err := Run(context.Background(), "ip", "-n", l.Switch, "link", "set", SwitchNodeIf, "up")
	return err
}

func (l *Lab) cleanup() {
	l.mu.Lock()
	procs := l.procs
	l.procs = nil
	l.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].Kill()
	}
	for _, ns := range []string{l.Node, l.Router, l.Switch} {
		if _, err := Run(context.Background(), "ip", "netns", "del", ns); err != nil && !strings.Contains(err.Error(), "No such file") {
			l.t.Logf("nslab: %v", err)
		}
		_ = os.RemoveAll(filepath.Join("/var/run/frr", ns))
	}
	if l.t.Failed() {
		l.t.Logf("nslab: logs kept in %s", l.Dir)
		return
	}
	_ = os.RemoveAll(l.Dir)
}

// Run runs argv (bounded by 30s) and returns its stdout; the error carries
// stderr.
func Run(ctx context.Context, argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// Exec runs argv in namespace ns.
func (l *Lab) Exec(ctx context.Context, ns string, argv ...string) (string, error) {
	return Run(ctx, append([]string{"ip", "netns", "exec", ns}, argv...)...)
}

type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }

// Permanent marks an error that Eventually must not retry.
func Permanent(err error) error { return permanent{err} }

// Process is a program started by Start.
type Process struct {
	Name string
	Log  string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
	once sync.Once
}

// Start runs argv in namespace ns in the foreground of its own process group,
// killed with the test (Pdeathsig) and by Cleanup, with its output in
// Dir/name.log. env entries are added to the environment.
func (l *Lab) Start(name, ns string, env []string, argv ...string) (*Process, error) {
	logPath := filepath.Join(l.Dir, name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns}, argv...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	p, err := l.startCmd(name, logPath, cmd)
	return p, err
}

func (l *Lab) startCmd(name, logPath string, cmd *exec.Cmd) (*Process, error) {
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("nslab: start %s: %w", name, err)
	}
	p := &Process{Name: name, Log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	l.mu.Lock()
	l.procs = append(l.procs, p)
	l.mu.Unlock()
	return p, nil
}

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err is the process's exit error, once Done is closed.
func (p *Process) Err() error { <-p.done; return p.err }

// Pid is the process id (and process group id).
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Kill sends SIGKILL to the process group and waits for the exit.
func (p *Process) Kill() {
	p.once.Do(func() {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	})
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
	}
}

// Tail returns the end of the process's log, for failure messages.
func (p *Process) Tail() string {
	b, _ := os.ReadFile(p.Log)
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}

// Eventually calls f every interval until it returns nil or timeout passes,
// and returns f's last error then; an error wrapped by Permanent ends it at
// once. Tests wait for positive signals with it.
func Eventually(timeout, interval time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return nil
		}
		var p permanent
		if errors.As(err, &p) {
			return p.err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %v: %w", timeout, err)
		}
		time.Sleep(interval)
	}
}
