package main

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/ironlb/ironlb/test/internal/apiload"
)

// loadMark is the API server's request counters and the lab processes' CPU
// at the start of a step.
type loadMark struct {
	at      time.Time
	metrics string // the API server's /metrics
	cpu     map[string]time.Duration
	busy    time.Duration // the machine's CPU time not idle
	self    time.Duration // this process's and its reaped children's (vtysh polls)
}

// processes are the lab's control-plane and ironlb processes by name.
func (b *bench) processes() map[string]int {
	out := map[string]int{}
	if pids := b.env.Cluster.PIDs(); len(pids) >= 2 {
		out["etcd"], out["kube-apiserver"] = pids[0], pids[1]
	}
	if b.ctrl != nil {
		out["controller"] = b.ctrl.Pid()
	}
	for i, sp := range b.speakers {
		out[fmt.Sprintf("speaker%d", i)] = sp.Pid()
	}
	return out
}

func (b *bench) mark(ctx context.Context) loadMark {
	m := loadMark{at: time.Now(), cpu: map[string]time.Duration{}, busy: machineBusy(), self: selfCPU()}
	m.metrics, _ = apiload.Fetch(ctx, b.env.Cluster.Client.Discovery().RESTClient())
	for name, pid := range b.processes() {
		m.cpu[name] = processCPU(pid)
	}
	return m
}

// loadSince says what the API server answered and what CPU each process used
// since m: requests by verb and resource (and by client with -audit).
func (b *bench) loadSince(ctx context.Context, what string, m loadMark) {
	end := time.Now()
	text, err := apiload.Fetch(ctx, b.env.Cluster.Client.Discovery().RESTClient())
	var before, after apiload.Counts
	if err == nil {
		if before, err = apiload.ParseMetrics(m.metrics); err == nil {
			after, err = apiload.ParseMetrics(text)
		}
	}
	if err != nil {
		say("  %s: API requests not read: %v", what, err)
	} else {
		d := after.Sub(before)
		delete(d, apiload.Key{Verb: "WATCH"}) // none: watches carry their resource
		say("  %s: %d API requests in %v, by verb and resource:", what, d.Total(), ms(end.Sub(m.at)))
		for _, l := range d.Lines("    ") {
			say("%s", l)
		}
		b.latencies(what, m.metrics, text)
	}
	var cpu []string
	var ours time.Duration
	for name, pid := range b.processes() {
		used := processCPU(pid) - m.cpu[name]
		ours += used
		cpu = append(cpu, fmt.Sprintf("%s %v", name, ms(used)))
	}
	sort.Strings(cpu)
	self := selfCPU() - m.self
	busy := machineBusy() - m.busy
	say("  %s: CPU used: %s; the bench with its vtysh polls of the router %v; the machine: %v busy of %v (%d cores), %v of it outside these processes (FRR's daemons, other users)",
		what, strings.Join(cpu, ", "), ms(self), ms(busy), ms(time.Duration(runtime.NumCPU())*end.Sub(m.at)), runtime.NumCPU(), ms(busy-ours-self))
	if path := b.env.Cluster.AuditLog; path != "" {
		time.Sleep(2 * time.Second) // the audit log is written in batches (1 s)
		byClient, err := apiload.ReadAudit(path, m.at, end)
		if err != nil {
			say("  %s: audit log not read: %v", what, err)
			return
		}
		for k := range byClient {
			if k.Verb == "watch" {
				delete(byClient, k)
			}
		}
		say("  %s: %d requests by client (audit log):", what, byClient.Total())
		for _, l := range byClient.Lines("    ") {
			say("%s", l)
		}
	}
}

// selfCPU is the CPU time of this process and of its children it has
// reaped (the vtysh and ip commands of the router polls).
func selfCPU() time.Duration {
	data, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return 0
	}
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 15 {
		return 0
	}
	var total int64
	for _, v := range f[11:15] { // utime stime cutime cstime
		var n int64
		fmt.Sscan(v, &n)
		total += n
	}
	return time.Duration(total) * time.Second / 100 // USER_HZ
}

// processCPU is the CPU time (user + system) process pid has used, from
// /proc/<pid>/stat; 0 if it is gone.
func processCPU(pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	var utime, stime int64
	fmt.Sscan(f[11], &utime)
	fmt.Sscan(f[12], &stime)
	return time.Duration(utime+stime) * time.Second / 100 // USER_HZ
}

// latencies says where the API server's time went between two expositions:
// mean request latency by verb and resource, the mean wait in API Priority
// and Fairness queues by priority level, and etcd's mean latency by
// operation and type (the top entries by total time).
func (b *bench) latencies(what, before, after string) {
	for _, h := range []struct {
		title, name string
		by          []string
		top         int
	}{
		{"API request latency (mean) by verb and resource", "apiserver_request_duration_seconds", []string{"verb", "resource", "subresource"}, 8},
		{"APF queue wait (mean) by priority level", "apiserver_flowcontrol_request_wait_duration_seconds", []string{"priority_level", "execute"}, 6},
		{"etcd request latency (mean) by operation and type", "etcd_request_duration_seconds", []string{"operation", "type"}, 8},
	} {
		means, err := apiload.Means(before, after, h.name, h.by...)
		if err != nil {
			say("  %s: %s not read: %v", what, h.title, err)
			continue
		}
		var parts []string
		for i, m := range means {
			if i == h.top {
				break
			}
			parts = append(parts, fmt.Sprintf("%s: %d x %v", strings.TrimSpace(m.Group), m.Count, m.Mean.Round(100*time.Microsecond)))
		}
		say("  %s: %s: %s", what, h.title, strings.Join(parts, "; "))
	}
}

// machineBusy is the CPU time all cores spent not idle (nor waiting for
// I/O) since boot, from /proc/stat.
func machineBusy() time.Duration {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	var busy int64
	for i, v := range f[1:] {
		var n int64
		fmt.Sscan(v, &n)
		if i != 3 && i != 4 && i < 8 { // not idle, iowait; not guest (counted in user)
			busy += n
		}
	}
	return time.Duration(busy) * time.Second / 100 // USER_HZ
}
