package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ironlb/ironlb/test/framework"
	"github.com/ironlb/ironlb/test/lab"
)

// wrkScript cycles every connection's requests over three routes (two hosts, two
// Services and the path-based fan-out) and prints wrk's own summary as one JSON
// line when the run ends (wrk's done callback: latencies in microseconds,
// errors.status counts answers >= 400).
const wrkScript = `
local reqs = {}
local i = 0
function init(args)
  reqs[1] = wrk.format("GET", "/foo", {Host = "foo.bar.com"})
  reqs[2] = wrk.format("GET", "/bar", {Host = "foo.bar.com"})
  reqs[3] = wrk.format("GET", "/", {Host = "bar.foo.com"})
end
function request()
  i = i + 1
  return reqs[(i % 3) + 1]
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('@@wrk {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,"p50_us":%d,"p99_us":%d,"mean_us":%.1f,"max_us":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.mean, latency.max))
end
`

// wrkResult is wrk's summary of one run.
type wrkResult struct {
	Requests   int64   `json:"requests"`
	DurationUS int64   `json:"duration_us"`
	Connect    int64   `json:"connect"`
	Read       int64   `json:"read"`
	Write      int64   `json:"write"`
	Status     int64   `json:"status"`
	Timeout    int64   `json:"timeout"`
	P50US      float64 `json:"p50_us"`
	P99US      float64 `json:"p99_us"`
	MeanUS     float64 `json:"mean_us"`
	MaxUS      float64 `json:"max_us"`
}

func (r wrkResult) rps() float64 {
	if r.DurationUS == 0 {
		return 0
	}
	return float64(r.Requests) / (float64(r.DurationUS) / 1e6)
}

// errors are failed requests of every kind: connections refused, reset or closed
// under a request, timeouts, and answers >= 400.
func (r wrkResult) errors() int64 { return r.Connect + r.Read + r.Write + r.Status + r.Timeout }

func (r wrkResult) errorDetail() string {
	return fmt.Sprintf("connect %d, read %d, write %d, timeout %d, status>=400 %d", r.Connect, r.Read, r.Write, r.Timeout, r.Status)
}

// loadGen runs wrk from a lab host against a VIP.
type loadGen struct {
	env     *framework.Env
	from    string
	script  string
	threads int
}

func newLoadGen(env *framework.Env, from string, threads int) (*loadGen, error) {
	script := filepath.Join(env.Lab.Dir(), "bench.lua")
	if err := os.WriteFile(script, []byte(wrkScript), 0o644); err != nil {
		return nil, err
	}
	return &loadGen{env: env, from: from, script: script, threads: threads}, nil
}

func (g *loadGen) args(url string, conns int, d time.Duration) []string {
	return []string{"wrk", "-t", strconv.Itoa(min(g.threads, conns)), "-c", strconv.Itoa(conns),
		"-d", strconv.Itoa(int(d.Seconds())) + "s", "--timeout", "5s", "-s", g.script, url}
}

// run is one bounded wrk run of d.
func (g *loadGen) run(ctx context.Context, url string, conns int, d time.Duration) (wrkResult, error) {
	args := g.args(url, conns, d)
	ctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
	defer cancel()
	out, err := g.env.Lab.Exec(ctx, g.from, args...)
	if err != nil {
		return wrkResult{}, err
	}
	return parseWrk(out)
}

// background is a wrk run that lasts until stop (at most max).
type background struct {
	p   *lab.Process
	log string
}

func (g *loadGen) start(url string, conns int, max time.Duration) (*background, error) {
	args := g.args(url, conns, max)
	log := filepath.Join(g.env.Lab.Dir(), fmt.Sprintf("wrk-%d.log", time.Now().UnixNano()))
	p, err := g.env.Lab.Start(g.from, log, args...)
	if err != nil {
		return nil, err
	}
	return &background{p: p, log: log}, nil
}

// stop ends the run with SIGINT (wrk then reports what it measured so far).
func (b *background) stop() (wrkResult, error) {
	_ = syscall.Kill(b.p.Pid(), syscall.SIGINT)
	select {
	case <-b.p.Done():
	case <-time.After(15 * time.Second):
		_ = b.p.Stop()
		return wrkResult{}, fmt.Errorf("wrk did not stop on SIGINT: %s", b.p.Tail(2000))
	}
	out, err := os.ReadFile(b.log)
	if err != nil {
		return wrkResult{}, err
	}
	return parseWrk(string(out))
}

func parseWrk(out string) (wrkResult, error) {
	const marker = "@@wrk "
	i := strings.LastIndex(out, marker)
	if i < 0 {
		return wrkResult{}, fmt.Errorf("wrk printed no summary: %s", out)
	}
	line := out[i+len(marker):]
	if j := strings.IndexByte(line, '\n'); j >= 0 {
		line = line[:j]
	}
	var r wrkResult
	if err := json.Unmarshal([]byte(line), &r); err != nil {
		return r, fmt.Errorf("wrk summary %q: %w", line, err)
	}
	return r, nil
}
