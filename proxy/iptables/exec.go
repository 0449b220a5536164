package iptables

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
)

// Exec implements Interface by running the iptables binaries of the system
// (iptables, iptables-restore, iptables-save, or the ip6tables ones), waiting up
// to 5 s for the xtables lock.
type Exec struct {
	family Family
	prefix []string

	once        sync.Once
	randomFully bool
}

// NewExec returns an Exec for family. prefix, when given, is prepended to every
// command, e.g. "ip", "netns", "exec", "NAME" to program another network namespace.
func NewExec(family Family, prefix ...string) *Exec {
	return &Exec{family: family, prefix: prefix}
}

// Family implements Interface.
func (e *Exec) Family() Family { return e.family }

func (e *Exec) bin(name string) string {
	if e.family == IPv6 {
		return strings.Replace(name, "iptables", "ip6tables", 1)
	}
	return name
}

// ExitError is a failed iptables command with its exit status and output.
type ExitError struct {
	Command string
	Status  int
	Output  string
}

// Error implements error.
func (e *ExitError) Error() string {
	return fmt.Sprintf("%s: exit status %d: %s", e.Command, e.Status, strings.TrimSpace(e.Output))
}

func (e *Exec) run(ctx context.Context, stdin []byte, name string, args ...string) ([]byte, error) {
	argv := append(append(append([]string{}, e.prefix...), e.bin(name)), args...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	err := cmd.Run()
	if err != nil {
		var xe *exec.ExitError
		if errors.As(err, &xe) {
			return out.Bytes(), &ExitError{Command: e.bin(name) + " " + strings.Join(args, " "), Status: xe.ExitCode(), Output: stderr.String()}
		}
		return nil, fmt.Errorf("%s: %w", e.bin(name), err)
	}
	return out.Bytes(), nil
}

// Restore implements Interface.
func (e *Exec) Restore(ctx context.Context, data []byte) error {
	if _, err := e.run(ctx, data, "iptables-restore", "-w", "5", "--noflush"); err != nil {
		return err
	}
	return nil
}

// Save implements Interface.
func (e *Exec) Save(ctx context.Context, table Table) ([]byte, error) {
	return e.run(ctx, nil, "iptables-save", "-t", string(table))
}

// notFound reports an iptables exit that means the rule (or a chain it
// names, e.g. its jump target) does not exist.
func notFound(err error) bool {
	var xe *ExitError
	if !errors.As(err, &xe) {
		return false
	}
	return xe.Status == 1 || (xe.Status == 2 &&
		(strings.Contains(xe.Output, "does not exist") || strings.Contains(xe.Output, "Couldn't load target")))
}

// HasRule implements Interface.
func (e *Exec) HasRule(ctx context.Context, table Table, chain string, args ...string) (bool, error) {
	_, err := e.run(ctx, nil, "iptables", append([]string{"-w", "5", "-t", string(table), "-C", chain}, args...)...)
	switch {
	case err == nil:
		return true, nil
	case notFound(err):
		return false, nil
	}
	return false, err
}

// EnsureRule implements Interface.
func (e *Exec) EnsureRule(ctx context.Context, table Table, chain string, args ...string) error {
	ok, err := e.HasRule(ctx, table, chain, args...)
	if err != nil || ok {
		return err
	}
	_, err = e.run(ctx, nil, "iptables", append([]string{"-w", "5", "-t", string(table), "-I", chain}, args...)...)
	return err
}

// DeleteRule implements Interface.
func (e *Exec) DeleteRule(ctx context.Context, table Table, chain string, args ...string) error {
	_, err := e.run(ctx, nil, "iptables", append([]string{"-w", "5", "-t", string(table), "-D", chain}, args...)...)
	if err != nil && !notFound(err) {
		return err
	}
	return nil
}

var versionRE = regexp.MustCompile(`v(\d+)\.(\d+)\.(\d+)`)

// RandomFully implements Interface: iptables 1.6.2 and Linux 3.14 added
// MASQUERADE --random-fully. The answer is probed once.
func (e *Exec) RandomFully(ctx context.Context) bool {
	e.once.Do(func() {
		out, err := e.run(ctx, nil, "iptables", "--version")
		if err != nil {
			return
		}
		rel, err := os.ReadFile("/proc/sys/kernel/osrelease")
		if err != nil {
			return
		}
		e.randomFully = atLeast(string(out), 1, 6, 2) && atLeast("v"+strings.TrimSpace(string(rel))+".0", 3, 14, 0)
	})
	return e.randomFully
}

// atLeast reports whether the first vX.Y.Z in s is at least major.minor.patch.
func atLeast(s string, major, minor, patch int) bool {
	m := versionRE.FindStringSubmatch(s)
	if m == nil {
		return false
	}
	got := [3]int{}
	for i := range got {
		got[i], _ = strconv.Atoi(m[i+1])
	}
	want := [3]int{major, minor, patch}
	for i := range got {
		if got[i] != want[i] {
			return got[i] > want[i]
		}
	}
	return true
}
