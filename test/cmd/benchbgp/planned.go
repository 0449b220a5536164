package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ironlb/ironlb/test/internal/benchlog"
	"github.com/ironlb/ironlb/test/lab"
)

// planned: (d). A real kube-proxy on every node forwards the VIP (the
// speakers run with --proxy=none, as shipped). The router hashes flows by
// their ports too (fib_multipath_hash_policy=1), so the client's connections
// spread over all three nodes and the stopped node always carries a third of
// them; with Linux's default (addresses only) every probe would take one node.
func (b *bench) planned(ctx context.Context) ([]string, error) {
	env := b.env
	for i := 1; i <= env.Lab.Nodes(); i++ {
		if _, err := env.StartKubeProxy(ctx, i); err != nil {
			return nil, err
		}
	}
	if _, err := env.Lab.Exec(ctx, lab.HostRouter, "sysctl", "-w", "net.ipv4.fib_multipath_hash_policy=1"); err != nil {
		return nil, err
	}
	if err := b.converged(ctx); err != nil {
		return nil, err
	}
	const probeFor = 15 * time.Second
	var stopLost, backLost, stopTotal, backTotal int
	var withdrawn, exited, readvertised []time.Duration
	missed := 0
	for trial := 1; trial <= b.trials; trial++ {
		node := (trial-1)%len(b.speakers) + 1
		probes, err := b.startProbe(ctx, probeFor)
		if err != nil {
			return nil, err
		}
		time.Sleep(time.Second)
		prefix := hostPrefix(webVIP)
		t0 := time.Now()
		gone := make(chan time.Duration, 1)
		go func() {
			d, err := b.poll.until(ctx, t0, 10*time.Second, routeQuery(prefix), viaExactly(prefix, b.hops(node)))
			if err != nil {
				d = -1
			}
			gone <- d
		}()
		if err := b.speakers[node].Terminate(); err != nil {
			return nil, err
		}
		tExit := time.Now()
		dGone := <-gone
		if dGone < 0 {
			// Recorded, not fatal: the next trials say whether it was
			// the machine or the speaker.
			missed++
			say("  trial %d: node%d's next hop NOT withdrawn within 10s of SIGTERM", trial, node)
		}
		tBack := time.Now()
		if b.speakers[node], err = env.StartSpeaker(ctx, node, b.speakerArgs...); err != nil {
			return nil, err
		}
		dBack, err := b.poll.until(ctx, tBack, 30*time.Second, routeQuery(prefix), viaExactly(prefix, b.hops()))
		if err != nil {
			if b.bfd {
				err = fmt.Errorf("%w; %s", err, b.bfdReport(ctx))
			}
			return nil, err
		}
		rep, err := probes()
		if err != nil {
			return nil, err
		}
		end := tBack.Add(dBack).Add(time.Second)
		truncated := ""
		if last := time.Unix(0, rep[len(rep)-1].Start); last.Before(end) {
			truncated = " (probing ended before)"
		}
		sl, st, swhy := lost(rep, t0.Add(-500*time.Millisecond), tBack)
		bl, bt, bwhy := lost(rep, tBack, end)
		stopLost, stopTotal, backLost, backTotal = stopLost+sl, stopTotal+st, backLost+bl, backTotal+bt
		if dGone >= 0 {
			withdrawn = append(withdrawn, dGone)
		}
		exited, readvertised = append(exited, tExit.Sub(t0)), append(readvertised, dBack)
		say("  trial %d: SIGTERM to node%d's speaker: next hop gone %v, process exited %v, %d of %d probes lost %s; new speaker advertising %v after its start, %d of %d probes lost%s %s",
			trial, node, ms(dGone), ms(tExit.Sub(t0)), sl, st, swhy, ms(dBack), bl, bt, truncated, bwhy)
	}
	lines := []string{
		stats("SIGTERM -> next hop gone at the router", withdrawn),
		fmt.Sprintf("  %-62s %d of %d", "SIGTERM -> next hop still there after 10 s", missed, b.trials),
		stats("SIGTERM -> speaker exited", exited),
		fmt.Sprintf("  %-62s %d of %d", "probes lost from 0.5 s before the SIGTERM until the exit", stopLost, stopTotal),
		stats("restarted speaker started -> next hop back", readvertised),
		fmt.Sprintf("  %-62s %d of %d", "probes lost from its start until 1 s after the next hop is back", backLost, backTotal),
	}
	if b.bfd {
		lines = append(lines, "  "+b.bfdReport(ctx))
	}
	return lines, nil
}

// startProbe runs the prober in the client namespace for d and returns a
// function that waits for its report.
func (b *bench) startProbe(ctx context.Context, d time.Duration) (func() ([]benchlog.Probe, error), error) {
	logPath := filepath.Join(b.env.Lab.Dir(), fmt.Sprintf("probe-%d.json", time.Now().UnixNano()))
	url := "http://" + webVIP + ":8000/"
	p, err := b.env.Lab.Start(lab.HostClient, logPath, b.self, "probe", "-url", url, "-duration", d.String())
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(p.Tail(4096), probingLine) {
		select {
		case <-p.Done():
			return nil, fmt.Errorf("prober exited: %v: %s", p.Err(), p.Tail(2000))
		case <-ctx.Done():
			_ = p.Stop()
			return nil, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = p.Stop()
			return nil, errors.New("prober did not start within 15s")
		}
	}
	return func() ([]benchlog.Probe, error) {
		select {
		case <-p.Done():
		case <-time.After(d + 30*time.Second):
			_ = p.Stop()
			return nil, errors.New("prober did not end")
		}
		data, err := os.ReadFile(logPath)
		if err != nil {
			return nil, err
		}
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		var rep []benchlog.Probe
		if err := json.Unmarshal([]byte(lines[len(lines)-1]), &rep); err != nil || len(rep) == 0 {
			return nil, fmt.Errorf("prober output: %v: %.500s", err, string(data))
		}
		os.Remove(logPath)
		return rep, nil
	}, nil
}
