package benchlog

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
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

// A failing attempt is counted lost with its reason, only inside the window,
// and the attempts come back in start order even when a slow one ends last.
func TestProbeEveryAndLost(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 95*time.Millisecond)
	defer cancel()
	var n atomic.Int32
	probes := ProbeEvery(ctx, 10*time.Millisecond, func() error {
		switch n.Add(1) {
		case 1:
			time.Sleep(30 * time.Millisecond) // ends after later ones
			return nil
		case 3:
			return errors.New("refused")
		}
		return nil
	})
	if len(probes) < 5 {
		t.Fatalf("%d probes in 95 ms at 10 ms", len(probes))
	}
	for i := 1; i < len(probes); i++ {
		if probes[i].Start < probes[i-1].Start {
			t.Fatalf("not in start order: %v", probes)
		}
	}
	lost, total, why := Lost(probes, probes[0].Start, probes[len(probes)-1].Start)
	if lost != 1 || total != len(probes) || !strings.Contains(why, "refused") {
		t.Fatalf("lost %d of %d (%s), want 1 of %d (refused)", lost, total, why, len(probes))
	}
	if lost, total, _ := Lost(probes, probes[3].Start, probes[len(probes)-1].Start); lost != 0 || total != len(probes)-3 {
		t.Fatalf("after the failure: lost %d of %d", lost, total)
	}
}
