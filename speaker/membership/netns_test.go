package membership

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
)

// The cluster tests need sockets, and must not use the root network
// namespace (not even its loopback). When root, each test re-executes this
// test binary for itself under `ip netns exec` in a fresh namespace named
// ilb<random>, whose loopback carries the members' addresses (198.18.0.0/24),
// so every socket the test and memberlist open lives in that namespace. The
// namespace is deleted when the test ends, also on failure; the child dies
// with the parent (Pdeathsig).

const netnsEnv = "IRONLB_MEMBERSHIP_NETNS"

// memberAddr is the address of the i-th test member (1-based).
func memberAddr(i int) netip.Addr { return netip.AddrFrom4([4]byte{198, 18, 0, byte(i)}) }

const testMembers = 6

// inNetns reports whether the caller runs inside its test namespace. If not,
// it runs the caller's test (or benchmark) there in a child process, relays
// its output, fails if the child failed, and returns false: the caller
// returns.
func inNetns(tb testing.TB) bool {
	tb.Helper()
	if os.Getenv(netnsEnv) != "" {
		checkNamespace(tb)
		return true
	}
	if runtime.GOOS != "linux" || os.Geteuid() != 0 {
		tb.Skip("skipped: needs root on Linux to run memberlist in its own network namespace")
	}
	id := make([]byte, 4)
	rand.Read(id)
	ns := "ilb" + hex.EncodeToString(id)
	ip := func(args ...string) {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			tb.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	ip("netns", "add", ns)
	tb.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	ip("-n", ns, "link", "set", "lo", "up")
	for i := 1; i <= testMembers; i++ {
		ip("-n", ns, "addr", "add", memberAddr(i).String()+"/32", "dev", "lo")
	}

	args := []string{"netns", "exec", ns, os.Args[0], "-test.v", "-test.count=1"}
	if b, ok := tb.(*testing.B); ok {
		args = append(args, "-test.run=^$", "-test.bench=^"+tb.Name()+"$", fmt.Sprintf("-test.benchtime=%dx", b.N))
	} else {
		args = append(args, "-test.run=^"+tb.Name()+"$")
	}
	if testing.Short() {
		args = append(args, "-test.short")
	}
	cmd := exec.Command("ip", args...)
	cmd.Env = append(os.Environ(), netnsEnv+"="+ns)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	childOutput = out.String()
	tb.Logf("in network namespace %s:\n%s", ns, out.String())
	if err != nil {
		tb.Fatalf("test in network namespace %s: %v", ns, err)
	}
	return false
}

// checkNamespace asserts the child runs in its own namespace: loopback only,
// carrying the test addresses.
func checkNamespace(t testing.TB) {
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	if len(ifs) != 1 || ifs[0].Name != "lo" {
		t.Fatalf("interfaces %v: not the test namespace", ifs)
	}
}

// childOutput is the output of the last child run, for benchmarks that report
// the child's figures.
var childOutput string
