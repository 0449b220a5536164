package benchlog

import (
	"context"
	"slices"
	"sync"
	"time"
)

// Probe is one attempt of a prober: when it started and ended (Unix
// nanoseconds), whether it succeeded, and why not.
type Probe struct {
	Start int64  `json:"start"`
	Done  int64  `json:"done"`
	OK    bool   `json:"ok"`
	Err   string `json:"err,omitempty"`
}

// ProbeEvery starts try every interval until ctx ends, each attempt on its
// own goroutine (a slow one does not delay the next), waits for them all and
// returns them in start order. try must bound itself (a timeout).
func ProbeEvery(ctx context.Context, interval time.Duration, try func() error) []Probe {
	var mu sync.Mutex
	var out []Probe
	var wg sync.WaitGroup
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for ctx.Err() == nil {
		wg.Go(func() {
			p := Probe{Start: time.Now().UnixNano()}
			err := try()
			p.Done = time.Now().UnixNano()
			p.OK = err == nil
			if err != nil {
				p.Err = err.Error()
			}
			mu.Lock()
			out = append(out, p)
			mu.Unlock()
		})
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
	wg.Wait()
	slices.SortFunc(out, func(a, b Probe) int { return int(a.Start - b.Start) })
	return out
}

// Lost counts the probes started in [from, to] (Unix nanoseconds) and those of
// them that failed, and summarises why they failed (Reasons).
func Lost(probes []Probe, from, to int64) (lost, total int, why string) {
	var errs []string
	for _, p := range probes {
		if p.Start < from || p.Start > to {
			continue
		}
		total++
		if !p.OK {
			lost++
			errs = append(errs, p.Err)
		}
	}
	return lost, total, Reasons(errs)
}
