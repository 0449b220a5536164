package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/ironlb/ironlb/test/lab"
)

// What the router knows is read with vtysh (a new process per query, like
// an operator would), polled every pollEvery with up to maxInFlight queries
// running at once, so a slow answer does not delay the next poll. A change is
// dated by the end of the first query that saw it: an upper bound, late by at
// most that query's duration (reported as the poll latency).
const (
	pollEvery   = 10 * time.Millisecond
	maxInFlight = 6
	// quietEvery is the poll interval while a step's API writes run (poller.quiet).
	quietEvery = 250 * time.Millisecond
)

// poller runs bounded vtysh polls and keeps their latencies.
type poller struct {
	l *lab.Lab

	mu        sync.Mutex
	latencies []time.Duration
	// quiet, while set and open, slows the polls to one at a time every
	// quietEvery. timeBulk sets it while a step's writes run: what it waits
	// for (every route there, or every route gone) cannot hold before the
	// last write is answered, and polling at full speed meanwhile took more
	// than half of the machine's CPU (48 s of 83 s in a 41 s burst of 1,000
	// creates), starving the API server being measured.
	quiet <-chan struct{}
}

// quieted reports whether polls are to be slowed now.
func (p *poller) quieted() bool {
	p.mu.Lock()
	q := p.quiet
	p.mu.Unlock()
	if q == nil {
		return false
	}
	select {
	case <-q:
		return false
	default:
		return true
	}
}

// until runs vtysh query every pollEvery until done(output), and returns the
// time from t0 to the end of the first poll that saw it. It gives up after
// within (measured from t0).
func (p *poller) until(ctx context.Context, t0 time.Time, within time.Duration, query string, done func(out string) bool) (time.Duration, error) {
	return p.untilFunc(ctx, t0, within, query, func(ctx context.Context) (string, error) { return p.l.Vtysh(ctx, query) }, done)
}

// untilFunc is until with any query (what names it in errors).
func (p *poller) untilFunc(ctx context.Context, t0 time.Time, within time.Duration, what string, query func(context.Context) (string, error), done func(out string) bool) (time.Duration, error) {
	ctx, cancel := context.WithDeadline(ctx, t0.Add(within))
	defer cancel()
	found := make(chan time.Time, 1)
	slots := make(chan struct{}, maxInFlight)
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	var last string
	var lastMu sync.Mutex
	var started time.Time
	for {
		if p.quieted() && (len(slots) > 0 || time.Since(started) < quietEvery) {
			goto wait
		}
		select {
		case slots <- struct{}{}:
			started = time.Now()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-slots }()
				start := time.Now()
				out, err := query(ctx)
				end := time.Now()
				if err != nil {
					return
				}
				p.mu.Lock()
				p.latencies = append(p.latencies, end.Sub(start))
				p.mu.Unlock()
				lastMu.Lock()
				last = out
				lastMu.Unlock()
				if done(out) {
					select {
					case found <- end:
					default:
					}
				}
			}()
		default: // every slot busy: skip this tick
		}
	wait:
		select {
		case at := <-found:
			cancel() // the polls still running are not needed
			return at.Sub(t0), nil
		case <-ctx.Done():
			lastMu.Lock()
			defer lastMu.Unlock()
			return 0, fmt.Errorf("%q not satisfied within %v; last answer: %.300s", what, within, last)
		case <-tick.C:
		}
	}
}

// frrRoute is a route of "show ip route PREFIX json".
type frrRoute struct {
	Selected bool `json:"selected"`
	Nexthops []struct {
		IP     string `json:"ip"`
		Active bool   `json:"active"`
	} `json:"nexthops"`
}

// routeQuery is the vtysh query for one prefix's route.
func routeQuery(prefix netip.Prefix) string {
	return "show ip route " + prefix.String() + " json"
}

// nextHops returns the active next hops (sorted) of the selected route to
// prefix in out, an answer to routeQuery; nil means no route.
func nextHops(out string, prefix netip.Prefix) []string {
	var table map[string][]frrRoute
	if json.Unmarshal([]byte(out), &table) != nil {
		return nil
	}
	var hops []string
	for _, r := range table[prefix.String()] {
		if !r.Selected {
			continue
		}
		for _, nh := range r.Nexthops {
			if nh.Active && nh.IP != "" {
				hops = append(hops, nh.IP)
			}
		}
	}
	sort.Strings(hops)
	return hops
}

// viaExactly is a poll condition: prefix's route has exactly hops.
func viaExactly(prefix netip.Prefix, hops []string) func(string) bool {
	want := slices.Sorted(slices.Values(hops))
	return func(out string) bool { return slices.Equal(nextHops(out, prefix), want) }
}

// bgpRoutesInFIB returns how many eBGP (or iBGP) routes zebra has installed
// in the kernel, from "show ip route summary json".
func bgpRoutesInFIB(out string) int {
	var sum struct {
		Routes []struct {
			FIB  int    `json:"fib"`
			Type string `json:"type"`
		} `json:"routes"`
	}
	if json.Unmarshal([]byte(out), &sum) != nil {
		return -1
	}
	n := 0
	for _, r := range sum.Routes {
		if r.Type == "ebgp" || r.Type == "ibgp" {
			n += r.FIB
		}
	}
	return n
}

// pathsReceived returns each neighbour's count of accepted prefixes from
// "show bgp ipv4 unicast summary json".
func pathsReceived(out string) map[string]int {
	var sum struct {
		Peers map[string]struct {
			PfxRcd int `json:"pfxRcd"`
		} `json:"peers"`
	}
	if json.Unmarshal([]byte(out), &sum) != nil {
		return nil
	}
	m := map[string]int{}
	for a, p := range sum.Peers {
		m[a] = p.PfxRcd
	}
	return m
}
