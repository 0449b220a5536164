package server

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"syscall"
	"testing"
)

// The socket tests of this package run in a network namespace of their own: TestMain,
// when root on Linux, creates one named ilb<random> (make lab-clean removes leftovers),
// makes 198.18.0.0/15 local to its loopback, and re-executes the test binary inside it
// with the same arguments; the namespace is deleted afterwards, also on failure or
// interrupt. Nothing is sent from or to the root namespace. Without root the socket
// tests skip with one line and the rest run as usual.
const netnsEnv = "IRONLB_INGRESS_TEST_NETNS"

func TestMain(m *testing.M) {
	if os.Getenv(netnsEnv) != "" || runtime.GOOS != "linux" || os.Geteuid() != 0 {
		os.Exit(m.Run())
	}
	os.Exit(runInNetns())
}

func runInNetns() int {
	var b [4]byte
	_, _ = rand.Read(b[:])
	ns := "ilb" + hex.EncodeToString(b[:])
	ip := func(args ...string) error {
		out, err := exec.Command("ip", args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("ip %v: %v: %s", args, err, out)
		}
		return nil
	}
	if err := ip("netns", "add", ns); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() {
		if err := ip("netns", "del", ns); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}()
	for _, args := range [][]string{
		{"-n", ns, "link", "set", "lo", "up"},
		// Every address of 198.18.0.0/15 is local: the proxy, backends and clients
		// bind where a test says, all on the namespace's loopback.
		{"-n", ns, "route", "add", "local", "198.18.0.0/15", "dev", "lo", "table", "local"},
	} {
		if err := ip(args...); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, os.Args[0]}, os.Args[1:]...)...)
	cmd.Env = append(os.Environ(), netnsEnv+"="+ns)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
	defer signal.Stop(sig)
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	go func() {
		for s := range sig {
			_ = cmd.Process.Signal(s)
		}
	}()
	if err := cmd.Wait(); err != nil {
		if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() > 0 {
			return ee.ExitCode()
		}
		fmt.Fprintln(os.Stderr, "test binary in", ns+":", err)
		return 1
	}
	return 0
}

// needNetns skips a socket test outside the test's network namespace.
func needNetns(tb testing.TB) {
	tb.Helper()
	if os.Getenv(netnsEnv) == "" {
		tb.Skip("needs root on Linux: the socket tests run in a network namespace of their own")
	}
}
