// Package benchlog is the progress output of the lab's benchmark commands:
// lines stamped with the seconds since the command started, and the machine's
// load average, without which a figure from the shared 2-core lab machine
// cannot be read.
package benchlog

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"time"
)

var start = time.Now()

// Say prints one progress line, "[  12.34s] message".
func Say(format string, args ...any) {
	fmt.Printf("[%7.2fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
}

// LoadAvg returns the 1, 5 and 15 minute load averages ("2.31 4.05 6.70"),
// or "?" when /proc/loadavg cannot be read.
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// Quantile is the p-quantile of ds by nearest rank (p 0: the minimum, 1: the
// maximum), rounded to the millisecond; 0 when ds is empty.
func Quantile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(ds))
	i := int(p*float64(len(s))+0.999999) - 1
	return s[max(0, min(i, len(s)-1))].Round(time.Millisecond)
}

// Stats is one result line: name, p50, p95, min, max and the sample count.
func Stats(name string, ds []time.Duration) string {
	if len(ds) == 0 {
		return fmt.Sprintf("  %-62s no samples", name)
	}
	q := func(p float64) time.Duration { return Quantile(ds, p) }
	return fmt.Sprintf("  %-62s p50 %-8v p95 %-8v min %-8v max %-8v (n=%d)", name, q(0.5), q(0.95), q(0), q(1), len(ds))
}

// Reasons summarises failure messages: each distinct message, cut to the text
// after its last ": " (so addresses and ports do not split them), with its
// count, sorted ("3x i/o timeout; 1x connection reset by peer").
func Reasons(errs []string) string {
	count := map[string]int{}
	for _, e := range errs {
		if i := strings.LastIndex(e, ": "); i >= 0 {
			e = e[i+2:]
		}
		count[e]++
	}
	parts := make([]string, 0, len(count))
	for e, n := range count {
		parts = append(parts, fmt.Sprintf("%dx %s", n, e))
	}
	slices.Sort(parts)
	return strings.Join(parts, "; ")
}
