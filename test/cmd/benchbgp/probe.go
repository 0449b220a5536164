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
	probes := benchlog.ProbeEvery(ctx, *interval, func() error {
		resp, err := client.Get(*target)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %s", resp.Status)
		}
		return nil
	})
	return json.NewEncoder(os.Stdout).Encode(probes)
}

// lost counts the probes started in [from, to) and those of them lost, and
// summarises why they were lost.
func lost(probes []benchlog.Probe, from, to time.Time) (n, total int, why string) {
	return benchlog.Lost(probes, from.UnixNano(), to.UnixNano()-1)
}
