// Package apiload counts what a benchmark step asked of the API server: the
// kube-apiserver's apiserver_request_total by verb and resource (from its
// /metrics, before and after the step), and, when the lab runs the API server
// with an audit log (cluster.Config.Audit), the requests by client too.
//
//	before, _ := apiload.Scrape(ctx, client.Discovery().RESTClient())
//	t0 := time.Now()
//	... the step ...
//	after, _ := apiload.Scrape(ctx, client.Discovery().RESTClient())
//	fmt.Println(after.Sub(before).Lines(""))
//	byClient, _ := apiload.ReadAudit(cluster.AuditLog, t0, time.Now())
//
// Long-running requests (WATCH) are counted when they start in the metrics
// and when they end in the audit log; the figures are for the write and read
// verbs. A scrape costs one GET of /metrics (some hundred kB).
package apiload

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"k8s.io/client-go/rest"
)

// Key is one kind of request: who (empty in the metrics), what and on what.
type Key struct {
	Client      string // user agent up to its first space (audit only)
	Verb        string // GET, LIST, POST, PUT, PATCH, DELETE, WATCH (metrics) or get, list, create, ... (audit)
	Resource    string
	Subresource string
}

func (k Key) String() string {
	r := k.Resource
	if k.Subresource != "" {
		r += "/" + k.Subresource
	}
	if k.Client == "" {
		return k.Verb + " " + r
	}
	return k.Client + " " + k.Verb + " " + r
}

// Counts are requests by Key.
type Counts map[Key]int

// Sub returns c minus before (a step's requests from two scrapes); kinds that
// did not grow are left out.
func (c Counts) Sub(before Counts) Counts {
	out := Counts{}
	for k, v := range c {
		if d := v - before[k]; d > 0 {
			out[k] = d
		}
	}
	return out
}

// Total is the number of requests in c.
func (c Counts) Total() int {
	n := 0
	for _, v := range c {
		n += v
	}
	return n
}

// Lines formats c, most frequent first, each line starting with indent.
func (c Counts) Lines(indent string) []string {
	keys := make([]Key, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if c[keys[i]] != c[keys[j]] {
			return c[keys[i]] > c[keys[j]]
		}
		return keys[i].String() < keys[j].String()
	})
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		out = append(out, fmt.Sprintf("%s%6d %s", indent, c[k], k))
	}
	return out
}

// Scrape reads apiserver_request_total from the API server's /metrics (the
// client needs the nonResourceURL /metrics: the lab's admin may).
func Scrape(ctx context.Context, client rest.Interface) (Counts, error) {
	text, err := Fetch(ctx, client)
	if err != nil {
		return nil, err
	}
	return ParseMetrics(text)
}

// Fetch returns the API server's /metrics text.
func Fetch(ctx context.Context, client rest.Interface) (string, error) {
	body, err := client.Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return "", fmt.Errorf("reading /metrics: %w", err)
	}
	return string(body), nil
}

// Mean is the mean of a histogram or summary between two expositions
// (before, after) by the labels by: (sum after - sum before) / (count after -
// count before), with the count, for groups that grew.
type Mean struct {
	Group string
	Count int
	Mean  time.Duration
}

// Means returns the means of histogram name (seconds) between two
// expositions, by labels, largest total time first.
func Means(before, after, name string, by ...string) ([]Mean, error) {
	var m [4]map[string]float64
	for i, in := range []struct{ text, suffix string }{{before, "_sum"}, {before, "_count"}, {after, "_sum"}, {after, "_count"}} {
		var err error
		if m[i], err = Series(in.text, name+in.suffix, by...); err != nil {
			return nil, err
		}
	}
	var out []Mean
	for g, c := range m[3] {
		n := c - m[1][g]
		if n <= 0 {
			continue
		}
		sum := m[2][g] - m[0][g]
		out = append(out, Mean{Group: g, Count: int(n), Mean: time.Duration(sum / n * float64(time.Second))})
	}
	sort.Slice(out, func(i, j int) bool {
		return float64(out[i].Mean)*float64(out[i].Count) > float64(out[j].Mean)*float64(out[j].Count)
	})
	return out, nil
}

// Series sums the samples of metric name in a Prometheus text exposition by
// the values of the labels by (joined with spaces): e.g. Series(text,
// "apiserver_request_duration_seconds_sum", "verb", "resource").
func Series(text, name string, by ...string) (map[string]float64, error) {
	out := map[string]float64{}
	for line := range strings.Lines(text) {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		rest := line[len(name):]
		labels := map[string]string{}
		if rest[0] == '{' {
			end := strings.LastIndexByte(rest, '}')
			if end < 0 {
				return nil, fmt.Errorf("bad metric line %q", strings.TrimSpace(line))
			}
			labels = parseLabels(rest[1:end])
			rest = rest[end+1:]
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
		if err != nil {
			return nil, fmt.Errorf("bad metric value in %q: %w", strings.TrimSpace(line), err)
		}
		vals := make([]string, len(by))
		for i, l := range by {
			vals[i] = labels[l]
		}
		out[strings.Join(vals, " ")] += v
	}
	return out, nil
}

// ParseMetrics sums apiserver_request_total of a Prometheus text exposition
// by verb, resource and subresource (over codes, groups and versions).
func ParseMetrics(text string) (Counts, error) {
	const name = "apiserver_request_total{"
	out := Counts{}
	for line := range strings.Lines(text) {
		if !strings.HasPrefix(line, name) {
			continue
		}
		end := strings.LastIndexByte(line, '}')
		if end < len(name) {
			return nil, fmt.Errorf("bad metric line %q", strings.TrimSpace(line))
		}
		labels := parseLabels(line[len(name):end])
		v, err := strconv.ParseFloat(strings.TrimSpace(line[end+1:]), 64)
		if err != nil {
			return nil, fmt.Errorf("bad metric value in %q: %w", strings.TrimSpace(line), err)
		}
		out[Key{Verb: labels["verb"], Resource: labels["resource"], Subresource: labels["subresource"]}] += int(v)
	}
	return out, nil
}

// parseLabels reads `a="x",b="y"` (label values without escaped quotes,
// which apiserver_request_total's are).
func parseLabels(s string) map[string]string {
	out := map[string]string{}
	for s != "" {
		eq := strings.IndexByte(s, '=')
		if eq < 0 || eq+1 >= len(s) || s[eq+1] != '"' {
			return out
		}
		k := s[:eq]
		rest := s[eq+2:]
		q := strings.IndexByte(rest, '"')
		if q < 0 {
			return out
		}
		out[k] = rest[:q]
		s = strings.TrimPrefix(rest[q+1:], ",")
	}
	return out
}

// auditEvent is what ReadAudit needs of an audit.k8s.io/v1 Event.
type auditEvent struct {
	UserAgent      string    `json:"userAgent"`
	Verb           string    `json:"verb"`
	StageTimestamp time.Time `json:"stageTimestamp"`
	ObjectRef      *struct {
		Resource    string `json:"resource"`
		Subresource string `json:"subresource"`
	} `json:"objectRef"`
}

// ReadAudit counts the requests of an API server audit log (JSON lines) that
// completed between from and to, by client, verb and resource. The log is
// written in batches: wait a second or two after the step before reading it.
func ReadAudit(path string, from, to time.Time) (Counts, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := Counts{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		var ev auditEvent
		if json.Unmarshal(sc.Bytes(), &ev) != nil {
			continue // a line cut by a batch being written
		}
		if ev.StageTimestamp.Before(from) || ev.StageTimestamp.After(to) {
			continue
		}
		k := Key{Client: ev.UserAgent, Verb: ev.Verb}
		if i := strings.IndexByte(k.Client, ' '); i >= 0 {
			k.Client = k.Client[:i]
		}
		if ev.ObjectRef != nil {
			k.Resource, k.Subresource = ev.ObjectRef.Resource, ev.ObjectRef.Subresource
		}
		out[k]++
	}
	return out, sc.Err()
}
