package nslab

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/klog/v2"
)

// AgentEnv, set to "1", puts a test binary in agent mode: its TestMain calls
// ServeAgent instead of running tests. The test side starts agents with
// StartAgent, which re-executes the test binary inside a namespace, so the
// code under test runs there with all its goroutines and sockets.
const AgentEnv = "ILB_NSLAB_AGENT"

// IsAgent reports whether this process is an agent.
func IsAgent() bool { return os.Getenv(AgentEnv) == "1" }

// Main is a TestMain: it runs the tests, or, in an agent, serve with
// ServeAgent.
func Main(m *testing.M, serve func(ctx context.Context, c *AgentConn, op string, body json.RawMessage) (any, error)) {
	if IsAgent() {
		os.Exit(ServeAgent(serve))
	}
	os.Exit(m.Run())
}

// message is one line of the agent protocol (JSON lines on stdin/stdout):
// requests carry ID, Op and Body; replies ID and Result or Error; events
// only Event.
type message struct {
	ID     int             `json:"id,omitempty"`
	Op     string          `json:"op,omitempty"`
	Body   json.RawMessage `json:"body,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
	Error  string          `json:"error,omitempty"`
	Event  json.RawMessage `json:"event,omitempty"`
}

// AgentConn is the agent side's connection to the test.
type AgentConn struct {
	mu  sync.Mutex
	enc *json.Encoder
}

// Emit sends an event to the test.
func (c *AgentConn) Emit(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	_ = c.enc.Encode(message{Event: b})
}

// ServeAgent answers requests from stdin with handle, one at a time, until
// stdin closes, and returns the exit code for os.Exit. klog logs at V(4) to
// stderr, which StartAgent keeps in the agent's log file.
func ServeAgent(handle func(ctx context.Context, c *AgentConn, op string, body json.RawMessage) (any, error)) int {
	fs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(fs)
	_ = fs.Set("v", "4")
	c := &AgentConn{enc: json.NewEncoder(os.Stdout)}
	dec := json.NewDecoder(bufio.NewReader(os.Stdin))
	for {
		var req message
		if err := dec.Decode(&req); err != nil {
			if errors.Is(err, io.EOF) {
				return 0
			}
			fmt.Fprintln(os.Stderr, "agent:", err)
			return 1
		}
		res, err := handle(context.Background(), c, req.Op, req.Body)
		reply := message{ID: req.ID}
		if err != nil {
			reply.Error = err.Error()
		} else if reply.Result, err = json.Marshal(res); err != nil {
			reply.Error = err.Error()
		}
		c.mu.Lock()
		_ = c.enc.Encode(reply)
		c.mu.Unlock()
	}
}

// Agent is the test side of an agent process.
type Agent struct {
	*Process
	mu      sync.Mutex
	enc     *json.Encoder
	nextID  int
	pending map[int]chan message
	events  []json.RawMessage
	wake    chan struct{}
}

// StartAgent re-executes the test binary in agent mode in namespace ns;
// its stderr (logs) goes to Dir/name.log.
func (l *Lab) StartAgent(name, ns string) (*Agent, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(l.Dir, name+".log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command("ip", "netns", "exec", ns, exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), AgentEnv+"=1")
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	p, err := l.startCmd(name, logPath, cmd)
	if err != nil {
		return nil, err
	}
	a := &Agent{Process: p, enc: json.NewEncoder(in), pending: map[int]chan message{}, wake: make(chan struct{}, 1)}
	go a.read(out)
	return a, nil
}

func (a *Agent) read(r io.Reader) {
	dec := json.NewDecoder(r)
	for {
		var m message
		if err := dec.Decode(&m); err != nil {
			a.mu.Lock()
			for id, ch := range a.pending {
				ch <- message{ID: id, Error: fmt.Sprintf("agent gone: %v", err)}
				delete(a.pending, id)
			}
			a.mu.Unlock()
			return
		}
		a.mu.Lock()
		if m.Event != nil {
			a.events = append(a.events, m.Event)
			select {
			case a.wake <- struct{}{}:
			default:
			}
		} else if ch := a.pending[m.ID]; ch != nil {
			ch <- m
			delete(a.pending, m.ID)
		}
		a.mu.Unlock()
	}
}

// Call sends op with body and decodes the result into res (which may be nil).
func (a *Agent) Call(ctx context.Context, op string, body, res any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	ch := make(chan message, 1)
	a.mu.Lock()
	a.nextID++
	id := a.nextID
	a.pending[id] = ch
	err = a.enc.Encode(message{ID: id, Op: op, Body: b})
	a.mu.Unlock()
	if err != nil {
		return fmt.Errorf("agent %s: send %s: %w", a.Name, op, err)
	}
	select {
	case m := <-ch:
		if m.Error != "" {
			return fmt.Errorf("agent %s: %s: %s", a.Name, op, m.Error)
		}
		if res != nil {
			return json.Unmarshal(m.Result, res)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("agent %s: %s: %w\n%s", a.Name, op, ctx.Err(), a.Tail())
	}
}

// MustCall is Call bounded by 60s that fails t on error.
func (a *Agent) MustCall(t testing.TB, op string, body, res any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := a.Call(ctx, op, body, res); err != nil {
		t.Fatal(err)
	}
}

// Events returns the events received so far.
func (a *Agent) Events() []json.RawMessage {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]json.RawMessage(nil), a.events...)
}

// WaitEvent waits until an event received at index from or later satisfies
// match and returns its index.
func (a *Agent) WaitEvent(from int, timeout time.Duration, match func(json.RawMessage) bool) (int, error) {
	deadline := time.After(timeout)
	for {
		a.mu.Lock()
		for i := from; i < len(a.events); i++ {
			if match(a.events[i]) {
				a.mu.Unlock()
				return i, nil
			}
		}
		a.mu.Unlock()
		select {
		case <-a.wake:
		case <-a.Done():
			return 0, fmt.Errorf("agent %s exited: %v", a.Name, a.Err())
		case <-deadline:
			return 0, fmt.Errorf("agent %s: no matching event within %v", a.Name, timeout)
		}
	}
}
