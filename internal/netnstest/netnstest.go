//go:build linux

// Package netnstest is what tests that build their own network namespaces
// share: unique ilb-prefixed names (so "make lab-clean" finds leftovers),
// running a command that dies with the test, and running Go code (sockets)
// inside a namespace. It never touches the root namespace by itself.
//
//	netnstest.RequireRoot(t, "ip", "iptables-restore")
//	ns := netnstest.Name() + "-cli"
//	netnstest.Sh(t, "ip", "netns", "add", ns)
//	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
//	err := netnstest.InNS(ns, func() error { ln, err = net.Listen("tcp4", addr); return err })
package netnstest

import (
	"crypto/rand"
	"encoding/hex"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/vishvananda/netns"
)

// RequireRoot skips the test, with one line, unless it runs as root and
// every binary is installed.
func RequireRoot(t testing.TB, bins ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipped: needs root (network namespaces)")
	}
	for _, b := range bins {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("skipped: %s not installed", b)
		}
	}
}

// Name returns "ilb" and 6 random hex digits: a prefix for one test's
// namespaces.
func Name() string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return "ilb" + hex.EncodeToString(b)
}

// Sh runs a command (killed if the test process dies) and returns its
// output; it fails the test on error.
func Sh(t testing.TB, args ...string) string {
	t.Helper()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// InNS runs fn on an OS thread switched into the named namespace. Sockets
// made there stay in it. The thread is never switched back: it ends with
// fn's goroutine.
func InNS(name string, fn func() error) error {
	target, err := netns.GetFromName(name)
	if err != nil {
		return err
	}
	defer target.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := netns.Set(target); err != nil {
			errc <- err
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// ServeTCP listens on addr ("192.0.2.1:80", "[2001:db8::1]:80") inside
// namespace ns and runs handle on its own goroutine for every connection,
// until the test ends (the listener is closed in t.Cleanup). handle owns the
// connection and closes it. An address without an IPv6 host listens on IPv4
// only.
func ServeTCP(t testing.TB, ns, addr string, handle func(net.Conn)) {
	t.Helper()
	network := "tcp4"
	if ap, err := netip.ParseAddrPort(addr); err == nil && ap.Addr().Is6() {
		network = "tcp6"
	}
	var ln net.Listener
	if err := InNS(ns, func() (err error) { ln, err = net.Listen(network, addr); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go handle(c)
		}
	}()
}
