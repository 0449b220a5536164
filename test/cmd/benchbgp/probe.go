package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/ironlb/ironlb/test/internal/benchlog"
)

// The prober runs in the client namespace (benchbgp starts itself there as
// "benchbgp probe ...", through lab.Start, so it dies with the bench): every
// interval it opens a new connection to the VIP and sends one HTTP request;
// a probe without a 200 answer within the timeout is lost. It prints one
// JSON report when -duration is over. Every loop is bounded by -duration.

// probingLine tells benchbgp that the prober runs.
const probingLine = "benchbgp: probing"

type probe struct {
	Start int64  `json:"start"` // Unix nanoseconds
	OK    bool   `json:"ok"`
	Err   string `json:"err,omitempty"`
}

func runProbe(args []string) error {
	fs := flag.NewFlagSet("probe", flag.ContinueOnError)
	target := fs.String("url", "", "URL to GET, one new connection per probe")
	interval := fs.Duration("interval", 10*time.Millisecond, "time between probes")
	duration := fs.Duration("duration", 5*time.Second, "how long to probe (at most 60s)")
	timeout := fs.Duration("timeout", time.Second, "a probe without an answer within this is lost")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *target == "" || *duration > time.Minute {
		return errors.New("probe: -url is required and -duration is at most 60s")
	}
	client := &http.Client{Timeout: *timeout, Transport: &http.Transport{DisableKeepAlives: true}}
	ctx, cancel := context.WithTimeout(context.Background(), *duration)
	defer cancel()
	fmt.Fprintln(os.Stderr, probingLine)
	var mu sync.Mutex
	var probes []probe
	var wg sync.WaitGroup
	tick := time.NewTicker(*interval)
	defer tick.Stop()
	for ctx.Err() == nil {
		wg.Add(1)
		go func(start time.Time) {
			defer wg.Done()
			p := probe{Start: start.UnixNano()}
			resp, err := client.Get(*target)
			if err == nil {
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err == nil && resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("status %s", resp.Status)
				}
			}
			p.OK = err == nil
			if err != nil {
				p.Err = err.Error()
			}
			mu.Lock()
			probes = append(probes, p)
			mu.Unlock()
		}(time.Now())
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
	wg.Wait()
	sort.Slice(probes, func(i, j int) bool { return probes[i].Start < probes[j].Start })
	return json.NewEncoder(os.Stdout).Encode(probes)
}

// lost counts the probes started in [from, to) and those of them lost, and
// summarises why they were lost.
func lost(probes []probe, from, to time.Time) (n, total int, why string) {
	var errs []string
	for _, p := range probes {
		if p.Start < from.UnixNano() || p.Start >= to.UnixNano() {
			continue
		}
		total++
		if !p.OK {
			n++
			errs = append(errs, p.Err)
		}
	}
	return n, total, benchlog.Reasons(errs)
}
