package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// failures: (c). Without BFD first (the router's BGP hold time of 3 s is
// all that notices a silent node), then with BFD.
func (b *bench) failures(ctx context.Context) ([]string, error) {
	var lines []string
	for _, withBFD := range []bool{false, true} {
		if err := b.startRouter(ctx, withBFD); err != nil {
			return nil, err
		}
		label := fmt.Sprintf("without BFD (hold time %v)", holdTime)
		if withBFD {
			label = "with BFD (100 ms x 3)"
		}
		if err := b.converged(ctx); err != nil {
			return nil, err
		}
		say("  router restarted %s; routes and sessions converged", label)
		var killed, cut []time.Duration
		for trial := 1; trial <= b.trials; trial++ {
			node := (trial-1)%len(b.speakers) + 1
			d, err := b.failNode(ctx, node, false)
			if err != nil {
				return nil, err
			}
			killed = append(killed, d)
			d2, err := b.failNode(ctx, node, true)
			if err != nil {
				return nil, err
			}
			cut = append(cut, d2)
			say("  trial %d %s: node%d's speaker SIGKILLed -> next hop gone %v; node%d's link cut -> next hop gone %v", trial, label, node, ms(d), node, ms(d2))
		}
		lines = append(lines,
			stats("speaker SIGKILLed -> next hop gone, "+label, killed),
			stats("link cut -> next hop gone, "+label, cut))
		if withBFD {
			lines = append(lines, "  "+b.bfdReport(ctx))
		}
	}
	return lines, nil
}

// converged waits until the router routes web's VIP via every node and,
// with BFD, has every node's BFD session up.
func (b *bench) converged(ctx context.Context) error {
	prefix := hostPrefix(webVIP)
	if _, err := b.poll.until(ctx, time.Now(), 90*time.Second, routeQuery(prefix), viaExactly(prefix, b.hops())); err != nil {
		return err
	}
	if !b.bfd {
		return nil
	}
	return wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		peers, err := b.env.RouterBFDPeers(ctx)
		if err != nil {
			return false, nil
		}
		for i := 1; i <= b.env.Lab.Nodes(); i++ {
			if peers[b.env.Lab.NodeIP(i)] != "up" {
				return false, nil
			}
		}
		return true, nil
	})
}

// failNode kills node's speaker (SIGKILL), or with cut takes its switch
// port down, times until its next hop leaves the router's route to web's
// VIP, and brings it back (a new speaker, or the port up) until converged.
func (b *bench) failNode(ctx context.Context, node int, cut bool) (time.Duration, error) {
	prefix := hostPrefix(webVIP)
	host := b.env.Lab.NodeName(node)
	t0 := time.Now()
	acted := make(chan error, 1)
	go func() {
		if cut {
			acted <- b.env.SetSwitchPort(ctx, host, false)
			return
		}
		b.speakers[node].Kill()
		acted <- nil
	}()
	d, err := b.poll.until(ctx, t0, 30*time.Second, routeQuery(prefix), viaExactly(prefix, b.hops(node)))
	if aerr := <-acted; aerr != nil {
		return 0, aerr
	}
	if err != nil {
		return 0, fmt.Errorf("%s failed (cut %v): %w", host, cut, err)
	}
	if cut {
		err = b.env.SetSwitchPort(ctx, host, true)
	} else {
		b.speakers[node], err = b.env.StartSpeaker(ctx, node, b.speakerArgs...)
	}
	if err != nil {
		return 0, err
	}
	return d, b.converged(ctx)
}

// bfdReport summarises the router's BFD sessions: per peer, its state, how
// often it went down (FRR's counters) and the last diagnostics of both ends.
// A planned stop costs one down per stop (AdminDown); more are sessions that
// timed out, e.g. an end starved of CPU for longer than the detection time.
func (b *bench) bfdReport(ctx context.Context) string {
	peers, err := b.env.Lab.Vtysh(ctx, "show bfd peers json")
	if err != nil {
		return "router BFD: " + err.Error()
	}
	counters, err := b.env.Lab.Vtysh(ctx, "show bfd peers counters json")
	if err != nil {
		return "router BFD: " + err.Error()
	}
	var ps, cs []map[string]any
	if json.Unmarshal([]byte(peers), &ps) != nil || json.Unmarshal([]byte(counters), &cs) != nil {
		return fmt.Sprintf("router BFD: unreadable: %.200s / %.200s", peers, counters)
	}
	var parts []string
	for _, p := range ps {
		line := fmt.Sprintf("%v %v (diagnostic %q, remote %q)", p["peer"], p["status"], p["diagnostic"], p["remote-diagnostic"])
		for _, c := range cs {
			if c["peer"] == p["peer"] {
				line += fmt.Sprintf(", up %v / down %v times", c["session-up"], c["session-down"])
			}
		}
		parts = append(parts, line)
	}
	sort.Strings(parts)
	return "router BFD: " + strings.Join(parts, "; ")
}
