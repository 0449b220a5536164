package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// frrRunDir is where FRR daemons started with -N <netns> keep their sockets.
const frrRunDir = "/var/run/frr"

var prefixRE = regexp.MustCompile(`^[a-z][a-z0-9]{2,11}$`)

// listNetns returns the names of all named network namespaces.
func listNetns(ctx context.Context) ([]string, error) {
	out, err := runSplit(ctx, "ip", "netns", "list")
	if err != nil {
		return nil, err
	}
	var names []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) > 0 {
			names = append(names, f[0])
		}
	}
	return names, nil
}

// rootLinks returns the names of all links in the root namespace.
func rootLinks(ctx context.Context) ([]string, error) {
	out, err := runSplit(ctx, "ip", "-j", "link", "show")
	if err != nil {
		return nil, err
	}
	var links []struct {
		Name string `json:"ifname"`
	}
	if err := json.Unmarshal([]byte(out), &links); err != nil {
		return nil, fmt.Errorf("lab: parse ip -j link: %w", err)
	}
	names := make([]string, 0, len(links))
	for _, l := range links {
		names = append(names, l.Name)
	}
	return names, nil
}

// netnsPids returns the pids of processes inside namespace ns.
func netnsPids(ctx context.Context, ns string) ([]int, error) {
	out, err := runSplit(ctx, "ip", "netns", "pids", ns)
	if err != nil {
		return nil, err
	}
	var pids []int
	self := os.Getpid()
	for _, f := range strings.Fields(out) {
		pid, err := strconv.Atoi(f)
		if err == nil && pid > 1 && pid != self {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// killNetns ends every process in namespace ns: SIGTERM, up to 1s grace,
// then SIGKILL, waiting up to 3s. Bounded in time.
func killNetns(ctx context.Context, ns string) error {
	if _, err := os.Stat(filepath.Join("/run/netns", ns)); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	pids, err := netnsPids(ctx, ns)
	if err != nil || len(pids) == 0 {
		return err
	}
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGTERM)
	}
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) && anyAlive(pids) {
		time.Sleep(20 * time.Millisecond)
	}
	for round := 0; round < 3; round++ {
		pids, err = netnsPids(ctx, ns)
		if err != nil || len(pids) == 0 {
			return err
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		deadline = time.Now().Add(time.Second)
		for time.Now().Before(deadline) && anyAlive(pids) {
			time.Sleep(20 * time.Millisecond)
		}
	}
	pids, err = netnsPids(ctx, ns)
	if err == nil && len(pids) > 0 {
		err = fmt.Errorf("lab: processes %v in namespace %s survive SIGKILL", pids, ns)
	}
	return err
}

func anyAlive(pids []int) bool {
	for _, p := range pids {
		if processAlive(p) {
			return true
		}
	}
	return false
}

// removeNetns kills every process in ns, removes FRR's runtime directory for
// it and deletes the namespace. A namespace that does not exist is not an
// error.
func removeNetns(ctx context.Context, ns string) error {
	if ns == "" || strings.ContainsAny(ns, "/. ") {
		return fmt.Errorf("lab: refusing odd namespace name %q", ns)
	}
	if _, err := os.Stat(filepath.Join("/run/netns", ns)); errors.Is(err, os.ErrNotExist) {
		_ = os.RemoveAll(filepath.Join(frrRunDir, ns))
		return nil
	}
	var errs []error
	if err := killNetns(ctx, ns); err != nil {
		errs = append(errs, err)
	}
	if err := os.RemoveAll(filepath.Join(frrRunDir, ns)); err != nil {
		errs = append(errs, err)
	}
	if out, err := run(ctx, "ip", "netns", "del", ns); err != nil && !strings.Contains(out, "No such file") {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// deleteRootLink deletes a link in the root namespace; a missing link is not
// an error.
func deleteRootLink(ctx context.Context, name string) error {
	out, err := run(ctx, "ip", "link", "del", "dev", name)
	if err != nil && (strings.Contains(out, "Cannot find device") || strings.Contains(out, "does not exist")) {
		return nil
	}
	return err
}

// CleanupPrefix removes every network namespace whose name starts with prefix
// (killing the processes inside first, and removing FRR's runtime directory
// for it) and every root-namespace link whose name starts with prefix.
// `make lab-clean` calls it with "ilb". The prefix must be 3-12 lowercase
// letters or digits, starting with a letter.
func CleanupPrefix(ctx context.Context, prefix string) error {
	if !prefixRE.MatchString(prefix) {
		return fmt.Errorf("lab: refusing to clean up with prefix %q (want 3-12 of [a-z0-9], starting with a letter)", prefix)
	}
	var errs []error
	names, err := listNetns(ctx)
	if err != nil {
		errs = append(errs, err)
	}
	for _, ns := range names {
		if strings.HasPrefix(ns, prefix) {
			if err := removeNetns(ctx, ns); err != nil {
				errs = append(errs, err)
			}
		}
	}
	// FRR runtime dirs whose namespace is gone already.
	if ents, err := os.ReadDir(frrRunDir); err == nil {
		for _, e := range ents {
			if e.IsDir() && strings.HasPrefix(e.Name(), prefix) {
				_ = os.RemoveAll(filepath.Join(frrRunDir, e.Name()))
			}
		}
	}
	links, err := rootLinks(ctx)
	if err != nil {
		errs = append(errs, err)
	}
	for _, l := range links {
		if strings.HasPrefix(l, prefix) {
			if err := deleteRootLink(ctx, l); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
