// Package child starts lab processes so that they die with the test process.
//
// PR_SET_PDEATHSIG (SysProcAttr.Pdeathsig) fires when the *thread* that forked the
// child dies, not the process, so forking from an ordinary goroutine could kill a
// child whenever the Go runtime retires that thread. Start forks every child from
// one goroutine locked to its OS thread for the life of the process: a child gets
// SIGKILL exactly when the test process dies, also when a `go test -timeout` panic
// skips every cleanup. The signal survives `ip netns exec` (which execs the
// command) because neither is set-user-ID.
package child

import (
	"os/exec"
	"runtime"
	"sync"
	"syscall"
)

var (
	once sync.Once
	reqs chan request
)

type request struct {
	cmd  *exec.Cmd
	errc chan error
}

// Start starts cmd in its own process group with SIGKILL as its parent-death
// signal (fields of cmd.SysProcAttr other than those two are kept).
func Start(cmd *exec.Cmd) error {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	once.Do(func() {
		reqs = make(chan request)
		go func() {
			runtime.LockOSThread() // never unlocked: this thread lives as long as the process
			for r := range reqs {
				r.errc <- r.cmd.Start()
			}
		}()
	})
	errc := make(chan error, 1)
	reqs <- request{cmd: cmd, errc: errc}
	return <-errc
}
