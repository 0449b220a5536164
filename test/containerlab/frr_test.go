package containerlab

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ironlb/ironlb/test/internal/child"
)

const frrBin = "/usr/lib/frr"

func needFRR(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (FRR daemons in a network namespace)")
	}
	for _, b := range []string{frrBin + "/zebra", frrBin + "/bgpd", "/usr/bin/vtysh"} {
		if _, err := os.Stat(b); err != nil {
			t.Skipf("FRR is not installed (make deps): %v", err)
		}
	}
}

// vtysh's dry run checks an integrated configuration against every daemon's
// commands, as `vtysh -b` would apply it: both leaves' configurations pass,
// and one unknown line fails (so the check can fail).
func TestFRRConfigsParse(t *testing.T) {
	needFRR(t)
	for _, leaf := range []string{"leaf1", "leaf2"} {
		conf := filepath.Join(leaf, "frr.conf")
		if out, err := exec.Command("vtysh", "--dryrun", "-f", conf).CombinedOutput(); err != nil {
			t.Errorf("vtysh --dryrun -f %s: %v\n%s", conf, err, out)
		}
	}
	b, err := os.ReadFile("leaf1/frr.conf")
	if err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(t.TempDir(), "frr.conf")
	if err := os.WriteFile(bad, append(b, []byte("router bgp 64512\n neighbor 192.0.2.1 remote-ass 64600\n")...), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("vtysh", "--dryrun", "-f", bad).CombinedOutput(); err == nil {
		t.Errorf("vtysh accepted a misspelt command: %s", out)
	}
}

// Each leaf's configuration, started for real (zebra and bgpd in a network
// namespace with the topology's interface names), gives the BGP instance,
// router ID, neighbors and interface addresses the agreement test checked.
func TestFRRLoadsTheLeafConfigs(t *testing.T) {
	needFRR(t)
	l := load(t, ".")
	for name, want := range l.leafs {
		t.Run(name, func(t *testing.T) {
			ns := fmt.Sprintf("ilb%04x-clab-%s", rand.Uint32()&0xffff, name)
			vtysh := startLeaf(t, ns, filepath.Join(name, "frr.conf"), want)
			var sum struct {
				IPv4Unicast struct {
					AS       uint32                     `json:"as"`
					RouterID string                     `json:"routerId"`
					Peers    map[string]json.RawMessage `json:"peers"`
				} `json:"ipv4Unicast"`
			}
			if err := json.Unmarshal([]byte(vtysh("show bgp summary json")), &sum); err != nil {
				t.Fatal(err)
			}
			got := sum.IPv4Unicast
			if got.AS != want.asn || got.RouterID != want.routerID.String() {
				t.Errorf("bgpd runs AS %d router-id %s, the configuration says %d %s", got.AS, got.RouterID, want.asn, want.routerID)
			}
			var peers, wantPeers []string
			for p := range got.Peers {
				peers = append(peers, p)
			}
			for a := range want.neighbors {
				wantPeers = append(wantPeers, a.String())
			}
			slices.Sort(peers)
			slices.Sort(wantPeers)
			if !slices.Equal(peers, wantPeers) {
				t.Errorf("bgpd has neighbors %v, want %v", peers, wantPeers)
			}
			for a, n := range want.neighbors {
				var nb map[string]struct {
					RemoteAS uint32 `json:"remoteAs"`
				}
				if err := json.Unmarshal([]byte(vtysh("show bgp neighbors "+a.String()+" json")), &nb); err != nil {
					t.Fatal(err)
				}
				if nb[a.String()].RemoteAS != n.remoteAS {
					t.Errorf("neighbor %s: remote-as %d, want %d", a, nb[a.String()].RemoteAS, n.remoteAS)
				}
			}
			for iface, p := range want.interfaces {
				out := vtysh("show interface " + iface + " json")
				if !strings.Contains(out, `"address":"`+p.String()+`"`) {
					t.Errorf("zebra has no address %s on %s: %s", p, iface, out)
				}
			}
			if want.neighbors[firstNeighbor(want)].password != "" {
				// A password shows in the running configuration.
				if rc := vtysh("show running-config"); !strings.Contains(rc, "password "+want.neighbors[firstNeighbor(want)].password) {
					t.Errorf("the running configuration lacks the neighbors' password")
				}
			}
		})
	}
}

func firstNeighbor(c *frrConfig) netip.Addr {
	var out netip.Addr
	for a := range c.neighbors {
		if !out.IsValid() || a.Less(out) {
			out = a
		}
	}
	return out
}

// startLeaf runs zebra and bgpd with conf in a new network namespace holding
// links of the configuration's interface names; everything is removed at
// the end of the test. It returns a vtysh runner for that namespace.
func startLeaf(t *testing.T, ns, conf string, c *frrConfig) func(cmd string) string {
	t.Helper()
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v %s", args, err, out)
		}
	}
	run("ip", "netns", "add", ns)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	for iface := range c.interfaces {
		// A veth pair inside the namespace (this kernel may lack the dummy
		// driver); the peer end only needs to be up.
		run("ip", "-n", ns, "link", "add", iface, "type", "veth", "peer", "name", "peer-"+iface)
		run("ip", "-n", ns, "link", "set", iface, "up")
		run("ip", "-n", ns, "link", "set", "peer-"+iface, "up")
	}
	// Not t.TempDir: its parent is private to root, and the daemons run as frr.
	dir, err := os.MkdirTemp("", "ilb-frr-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	b, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	confPath := filepath.Join(dir, "frr.conf")
	if err := os.WriteFile(confPath, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if u, err := user.Lookup("frr"); err == nil {
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		_ = os.Chown(dir, uid, gid)
		_ = os.Chown(confPath, uid, gid)
	}
	_ = os.Chmod(dir, 0o755)
	runDir := filepath.Join("/var/run/frr", ns)
	t.Cleanup(func() { os.RemoveAll(runDir) })

	var procs []*exec.Cmd
	t.Cleanup(func() {
		for _, p := range procs {
			_ = syscall.Kill(-p.Process.Pid, syscall.SIGTERM)
		}
		for _, p := range procs {
			done := make(chan struct{})
			go func() { _ = p.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				_ = syscall.Kill(-p.Process.Pid, syscall.SIGKILL)
				<-done
			}
		}
	})
	start := func(daemon string) {
		t.Helper()
		var out bytes.Buffer
		cmd := exec.Command("ip", "netns", "exec", ns, filepath.Join(frrBin, daemon), "-N", ns, "-f", confPath,
			"-i", filepath.Join(dir, daemon+".pid"), "-P", "0", "--log", "file:"+filepath.Join(dir, daemon+".log"))
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := child.Start(cmd); err != nil { // foreground, dies with the test
			t.Fatal(err)
		}
		procs = append(procs, cmd)
	}
	vtysh := func(command string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var stderr bytes.Buffer
		cmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns, "vtysh", "-N", ns, "-c", command)
		cmd.Stderr = &stderr // e.g. the warning that there is no vtysh.conf
		out, err := cmd.Output()
		if err != nil {
			err = fmt.Errorf("%w: %s", err, stderr.String())
		}
		return string(out), err
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				logs, _ := os.ReadFile(filepath.Join(dir, "bgpd.log"))
				t.Fatalf("%s within 20s; bgpd log: %s", what, logs)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	start("zebra")
	waitFor("zebra up", func() bool { _, err := os.Stat(filepath.Join(runDir, "zserv.api")); return err == nil })
	start("bgpd")
	waitFor("bgpd answers", func() bool {
		out, err := vtysh("show bgp summary json")
		return err == nil && json.Valid([]byte(out)) && strings.Contains(out, "ipv4Unicast")
	})
	return func(command string) string {
		t.Helper()
		out, err := vtysh(command)
		if err != nil {
			t.Fatalf("vtysh %q: %v %s", command, err, out)
		}
		return out
	}
}
