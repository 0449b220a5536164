// Package benchlog is the progress output of the lab's benchmark commands:
// lines stamped with the seconds since the command started, and the machine's
// load average, without which a figure from the shared 2-core lab machine
// cannot be read.
package benchlog

import (
	"fmt"
	"os"
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
