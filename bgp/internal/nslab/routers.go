package nslab

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

const frrBin = "/usr/lib/frr"

// FRR is FRR running in the router namespace.
type FRR struct {
	l       *Lab
	daemons map[string]*Process
}

// StartFRR starts zebra, then each daemon in confs (daemon name -> its
// configuration, e.g. "bgpd", "bfdd") in the router namespace, in the
// foreground, and waits until vtysh answers for each. Configuration files are
// readable by user frr.
func (l *Lab) StartFRR(t interface {
	Helper()
	Fatal(...any)
	Skip(...any)
}, confs map[string]string) *FRR {
	t.Helper()
	if _, err := os.Stat(filepath.Join(frrBin, "bgpd")); err != nil {
		t.Skip("skipped: FRR not installed (apt-get install frr)")
	}
	f := &FRR{l: l, daemons: map[string]*Process{}}
	all := map[string]string{"zebra": "hostname router\n"}
	for d, c := range confs {
		all[d] = c
	}
	uid, gid := -1, -1
	if u, err := user.Lookup("frr"); err == nil {
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
	}
	for d, c := range all {
		p := filepath.Join(l.Dir, d+".conf")
		if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
		if uid >= 0 {
			_ = os.Chown(p, uid, gid)
		}
	}
	_ = os.RemoveAll(filepath.Join("/var/run/frr", l.Router))
	order := []string{"zebra"}
	for d := range confs {
		order = append(order, d)
	}
	for _, d := range order {
		p, err := l.Start(d, l.Router, nil, filepath.Join(frrBin, d), "-N", l.Router,
			"-f", filepath.Join(l.Dir, d+".conf"), "-i", filepath.Join(l.Dir, d+".pid"),
			"-P", "0", "--log", "file:"+filepath.Join(l.Dir, d+".frrlog"))
		if err != nil {
			t.Fatal(err)
		}
		f.daemons[d] = p
		probe := map[string]string{"zebra": "show version", "bgpd": "show bgp summary json", "bfdd": "show bfd peers json"}[d]
		if probe == "" {
			continue
		}
		err = Eventually(20*time.Second, 50*time.Millisecond, func() error {
			select {
			case <-p.Done():
				return Permanent(fmt.Errorf("%s exited: %v\n%s", d, p.Err(), p.Tail()))
			default:
			}
			_, err := f.Vtysh(context.Background(), probe)
			return err
		})
		if err != nil {
			t.Fatal(fmt.Errorf("FRR %s did not come up: %w", d, err))
		}
	}
	return f
}

// Daemon returns the process of an FRR daemon.
func (f *FRR) Daemon(name string) *Process { return f.daemons[name] }

// Vtysh runs one vtysh command against the router's FRR.
func (f *FRR) Vtysh(ctx context.Context, cmd string) (string, error) {
	return f.l.Exec(ctx, f.l.Router, "vtysh", "-N", f.l.Router, "-c", cmd)
}

// JSON runs a vtysh command ending in "json" and decodes its output into v.
func (f *FRR) JSON(ctx context.Context, cmd string, v any) error {
	out, err := f.Vtysh(ctx, cmd)
	if err != nil {
		return err
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		return fmt.Errorf("%s: %w: %q", cmd, err, out)
	}
	return nil
}

// StartBIRD runs BIRD 2 in the router namespace with conf, in the
// foreground, and waits until birdc answers. It returns the control socket.
func (l *Lab) StartBIRD(t interface {
	Helper()
	Fatal(...any)
	Skip(...any)
}, conf string) string {
	t.Helper()
	if _, err := exec.LookPath("bird"); err != nil {
		t.Skip("skipped: BIRD not installed (apt-get install bird2)")
	}
	base := filepath.Join(l.Dir, "bird")
	if err := os.WriteFile(base+".conf", []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := l.Start("bird", l.Router, nil, "bird", "-f", "-c", base+".conf", "-s", base+".ctl", "-P", base+".pid")
	if err != nil {
		t.Fatal(err)
	}
	err = Eventually(10*time.Second, 50*time.Millisecond, func() error {
		select {
		case <-p.Done():
			return Permanent(fmt.Errorf("bird exited: %v\n%s", p.Err(), p.Tail()))
		default:
		}
		_, err := l.Birdc(context.Background(), base+".ctl", "show status")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return base + ".ctl"
}

// Birdc runs one birdc command on the control socket ctl.
func (l *Lab) Birdc(ctx context.Context, ctl string, cmd ...string) (string, error) {
	return l.Exec(ctx, l.Router, append([]string{"birdc", "-s", ctl}, cmd...)...)
}

// RouteMonitor follows the router namespace's kernel routing table with
// "ip monitor route" and timestamps every change as it is read.
type RouteMonitor struct {
	p      *Process
	mu     sync.Mutex
	events []RouteEvent
	wake   chan struct{}
}

// RouteEvent is one line of "ip monitor route".
type RouteEvent struct {
	At      time.Time
	Deleted bool
	Dst     string // the destination as printed, e.g. "203.0.113.10"
	Line    string
}

// MonitorRoutes starts a RouteMonitor in the router namespace; it runs until
// the test ends.
func (l *Lab) MonitorRoutes() (*RouteMonitor, error) {
	cmd := exec.Command("ip", "-n", l.Router, "monitor", "route")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	p, err := l.startCmd("ip-monitor", "", cmd)
	if err != nil {
		return nil, err
	}
	m := &RouteMonitor{p: p, wake: make(chan struct{}, 1)}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			now := time.Now()
			line := sc.Text()
			ev := RouteEvent{At: now, Line: line}
			rest, deleted := strings.CutPrefix(line, "Deleted ")
			ev.Deleted = deleted
			if f := strings.Fields(rest); len(f) > 0 {
				ev.Dst = f[0]
			}
			m.mu.Lock()
			m.events = append(m.events, ev)
			m.mu.Unlock()
			select {
			case m.wake <- struct{}{}:
			default:
			}
		}
	}()
	// "ip monitor" prints nothing when it is ready: a probe route it reports
	// is the positive signal that it listens.
	const probe = "203.0.113.254"
	err = Eventually(10*time.Second, 0, func() error {
		for _, op := range []string{"add", "del"} {
			if _, err := Run(context.Background(), "ip", "-n", l.Router, "route", op, probe+"/32", "dev", RouterIf); err != nil {
				return err
			}
		}
		_, err := m.Wait(time.Time{}, 200*time.Millisecond, func(ev RouteEvent) bool { return ev.Dst == probe })
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("nslab: ip monitor route: %w", err)
	}
	return m, nil
}

// Wait returns the first event after since that matches, or an error after
// timeout.
func (m *RouteMonitor) Wait(since time.Time, timeout time.Duration, match func(RouteEvent) bool) (RouteEvent, error) {
	deadline := time.After(timeout)
	for {
		m.mu.Lock()
		for _, ev := range m.events {
			if !ev.At.Before(since) && match(ev) {
				m.mu.Unlock()
				return ev, nil
			}
		}
		m.mu.Unlock()
		select {
		case <-m.wake:
		case <-deadline:
			return RouteEvent{}, fmt.Errorf("no matching route change within %v", timeout)
		}
	}
}
