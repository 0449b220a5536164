package benchlog

import (
	"testing"
	"time"
)

// Nearest rank, as the benchmark tables read: of 1..10 ms the median is 5 ms,
// p95 is the 10th value, p0 the minimum.
func TestQuantile(t *testing.T) {
	var ds []time.Duration
	for i := 10; i >= 1; i-- {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{{0, time.Millisecond}, {0.5, 5 * time.Millisecond}, {0.95, 10 * time.Millisecond}, {1, 10 * time.Millisecond}} {
		if got := Quantile(ds, c.p); got != c.want {
			t.Errorf("Quantile(1..10 ms, %v) = %v, want %v", c.p, got, c.want)
		}
	}
	if got := Quantile(nil, 0.5); got != 0 {
		t.Errorf("Quantile of nothing = %v", got)
	}
}

// Messages differing only in addresses count as one reason.
func TestReasons(t *testing.T) {
	got := Reasons([]string{
		"read tcp 192.0.2.100:1->192.0.2.200:8000: read: connection reset by peer",
		"read tcp 192.0.2.100:2->192.0.2.201:8000: read: connection reset by peer",
		"dial tcp 192.0.2.200:8000: i/o timeout",
	})
	if want := "1x i/o timeout; 2x connection reset by peer"; got != want {
		t.Errorf("Reasons = %q, want %q", got, want)
	}
}
