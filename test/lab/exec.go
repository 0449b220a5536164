package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ironlb/ironlb/test/internal/child"
)

// defaultCmdTimeout bounds every command the lab runs when the caller's
// context has no deadline of its own.
const defaultCmdTimeout = 2 * time.Minute

// boundCtx returns ctx with defaultCmdTimeout applied unless it already has a
// deadline.
func boundCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, defaultCmdTimeout)
}

// command builds an exec.Cmd in its own process group that is killed as a
// group when ctx ends.
func command(ctx context.Context, argv []string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		if cmd.Process == nil {
			return nil
		}
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	cmd.WaitDelay = 2 * time.Second
	return cmd
}

// run runs argv and returns its combined output. The error includes the
// command line and the output.
func run(ctx context.Context, argv ...string) (string, error) {
	ctx, cancel := boundCtx(ctx)
	defer cancel()
	var out bytes.Buffer
	cmd := command(ctx, argv)
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

// runSplit runs argv and returns stdout; stderr goes into the error only.
func runSplit(ctx context.Context, argv ...string) (string, error) {
	ctx, cancel := boundCtx(ctx)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := command(ctx, argv)
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s: %w: %s", strings.Join(argv, " "),
			err, strings.TrimSpace(stderr.String()+" "+stdout.String()))
	}
	return stdout.String(), nil
}

// exitCode returns the exit status in err, or -1.
func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

// Process is a background process started by Lab.Start (or StartPodServer,
// StartFRR) in its own process group.
type Process struct {
	name    string
	cmd     *exec.Cmd
	pid     int
	done    chan struct{}
	err     error
	logPath string
	stop    sync.Once
	stopErr error
}

// Pid returns the process id (also its process group id).
func (p *Process) Pid() int { return p.pid }

// LogPath returns the file that receives the process's stdout and stderr.
func (p *Process) LogPath() string { return p.logPath }

// Done is closed when the process has exited (and been reaped).
func (p *Process) Done() <-chan struct{} { return p.done }

// Err returns the process's exit error once Done is closed (nil before).
func (p *Process) Err() error {
	select {
	case <-p.done:
		return p.err
	default:
		return nil
	}
}

// Stop sends SIGTERM to the process group, waits up to 3s, then sends SIGKILL
// and waits up to 3s more. It returns an error only if the process could not
// be ended. Stop is idempotent.
func (p *Process) Stop() error {
	p.stop.Do(func() {
		select {
		case <-p.done:
			// Exited already; still sweep the group for leftovers.
			_ = syscall.Kill(-p.pid, syscall.SIGKILL)
			return
		default:
		}
		_ = syscall.Kill(-p.pid, syscall.SIGTERM)
		select {
		case <-p.done:
			_ = syscall.Kill(-p.pid, syscall.SIGKILL)
			return
		case <-time.After(3 * time.Second):
		}
		_ = syscall.Kill(-p.pid, syscall.SIGKILL)
		select {
		case <-p.done:
		case <-time.After(3 * time.Second):
			p.stopErr = fmt.Errorf("lab: process %s (pid %d) did not exit after SIGKILL", p.name, p.pid)
		}
	})
	return p.stopErr
}

// startProcess starts argv in its own process group with output to logPath.
func startProcess(name string, argv []string, logPath string) (*Process, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lab: open log: %w", err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout = f
	cmd.Stderr = f
	if err := child.Start(cmd); err != nil { // own process group; dies with the test process
		f.Close()
		return nil, fmt.Errorf("lab: start %s: %w", strings.Join(argv, " "), err)
	}
	p := &Process{name: name, cmd: cmd, pid: cmd.Process.Pid, done: make(chan struct{}), logPath: logPath}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

// processAlive reports whether pid exists and is not a zombie.
func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// Format: pid (comm) S ...; comm may contain spaces and parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return false
	}
	state := s[i+2]
	return state != 'Z' && state != 'X'
}

// Tail returns the last n bytes of the process's log, for error messages.
func (p *Process) Tail(n int64) string { return tail(p.logPath, n) }

// tail returns the last n bytes of a file, for error messages.
func tail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	off := st.Size() - n
	if off < 0 {
		off = 0
	}
	buf := make([]byte, st.Size()-off)
	_, _ = f.ReadAt(buf, off)
	return strings.TrimSpace(string(buf))
}
