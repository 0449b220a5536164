package lab

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// reaperScript removes what a lab with prefix $1 made (its namespaces and the
// processes inside them, its root-namespace links, FRR's runtime directories, and
// the lab directory $2 when the lab created it) once its standard input reaches EOF.
const reaperScript = `read -r _ || true
for ns in $(ip netns list | awk '{print $1}'); do
  case "$ns" in "$1"-*)
    for p in $(ip netns pids "$ns"); do kill -9 "$p" 2>/dev/null; done
    ip netns del "$ns" 2>/dev/null;;
  esac
done
for ln in $(ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1); do
  case "$ln" in "$1"*) ip link del "$ln" 2>/dev/null;; esac
done
rm -rf /var/run/frr/"$1"-*
[ -n "$2" ] && rm -rf "$2"
exit 0`

// reaper is a watchdog process that cleans up after this lab if the test process
// dies without calling Close (a go test -timeout panic, SIGKILL, a crash): its
// standard input is a pipe whose write end only this process holds (close-on-exec,
// so no child inherits it), and the kernel closes it when the process dies. It runs
// in its own session, so signals to the test's process groups do not reach it.
type reaper struct {
	cmd *exec.Cmd
	w   *os.File
}

func startReaper(prefix, ownDir string) (*reaper, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("sh", "-c", reaperScript, "ironlb-lab-reaper", prefix, ownDir)
	cmd.Stdin = r
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		return nil, fmt.Errorf("lab: starting the cleanup watchdog: %w", err)
	}
	r.Close()
	return &reaper{cmd: cmd, w: w}, nil
}

// stop lets the watchdog run its (by now idle) sweep and waits for it.
func (r *reaper) stop() {
	if r == nil {
		return
	}
	r.w.Close()
	done := make(chan struct{})
	go func() { _ = r.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = r.cmd.Process.Kill()
	}
}
