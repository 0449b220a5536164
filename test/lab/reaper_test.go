package lab

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A test process that dies without cleaning up (here: SIGKILL, as after a go test
// -timeout panic) leaves no namespace, link or process behind: its lab processes
// die with it (parent-death signal) and the watchdog removes the namespaces.
func TestKilledTestLeavesNothing(t *testing.T) {
	if os.Getenv("IRONLB_LAB_VICTIM") != "" {
		victim()
		return
	}
	needRoot(t)
	prefix := fmt.Sprintf("ilbv%04x", rand.IntN(1<<16))
	cmd := exec.Command(os.Args[0], "-test.run=^TestKilledTestLeavesNothing$", "-test.v")
	cmd.Env = append(os.Environ(), "IRONLB_LAB_VICTIM="+prefix)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = CleanupPrefix(context.Background(), prefix)
	})
	// The victim prints the pid of a process it runs inside its lab, then waits.
	var pid int
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VICTIM-READY "); ok {
			pid, _ = strconv.Atoi(v)
			break
		}
	}
	if pid == 0 {
		t.Fatal("the victim did not build its lab")
	}
	names, _ := listNetns(context.Background())
	if !hasPrefixed(names, prefix) || !processAlive(pid) {
		t.Fatalf("victim's lab not up: namespaces %v, pid %d alive %v", names, pid, processAlive(pid))
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	deadline := time.Now().Add(30 * time.Second)
	for {
		names, _ := listNetns(context.Background())
		links, _ := rootLinks(context.Background())
		if !hasPrefixed(names, prefix) && !hasPrefixed(links, prefix) && !processAlive(pid) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the test process died: namespaces %v, links %v, lab process %d alive %v", names, links, pid, processAlive(pid))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func hasPrefixed(names []string, prefix string) bool {
	for _, n := range names {
		if strings.HasPrefix(n, prefix) {
			return true
		}
	}
	return false
}

// victim builds a small lab, starts a long-running process in a node and blocks
// (bounded) until it is killed.
func victim() {
	ctx := context.Background()
	l, err := New(ctx, Spec{Nodes: 1, Prefix: os.Getenv("IRONLB_LAB_VICTIM")})
	if err != nil {
		fmt.Println("VICTIM-ERROR", err)
		os.Exit(1)
	}
	p, err := l.Start(l.NodeName(1), l.Dir()+"/sleep.log", "sleep", "120")
	if err != nil {
		fmt.Println("VICTIM-ERROR", err)
		os.Exit(1)
	}
	fmt.Printf("VICTIM-READY %d\n", p.Pid())
	time.Sleep(2 * time.Minute) // never returns normally: the parent kills us
	os.Exit(1)
}
