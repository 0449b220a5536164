package l2

import (
	"testing"
	"time"
)

func TestSlotSchedule(t *testing.T) {
	t0 := time.Unix(1000, 0)
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	tests := []struct {
		name string
		tm   timing
		want []time.Time // the times rounds go out, polling every millisecond
	}{
		{"burst of three, no refresh", timing{count: 3, interval: 100 * time.Millisecond}, []time.Time{ms(0), ms(100), ms(200)}},
		{"single round, no refresh", timing{count: 1, interval: 100 * time.Millisecond}, []time.Time{ms(0)}},
		{"burst then refresh", timing{count: 2, interval: 100 * time.Millisecond, refresh: 300 * time.Millisecond},
			[]time.Time{ms(0), ms(100), ms(400), ms(700), ms(1000)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s slot
			s.start(t0, tt.tm)
			var got []time.Time
			for now := t0; now.Before(ms(1001)); now = now.Add(time.Millisecond) {
				if s.due(now) {
					got = append(got, now)
					s.sent(now, tt.tm)
				}
			}
			if len(got) != len(tt.want) {
				t.Fatalf("rounds at %v, want %v", got, tt.want)
			}
			for i := range got {
				if !got[i].Equal(tt.want[i]) {
					t.Fatalf("rounds at %v, want %v", got, tt.want)
				}
			}
		})
	}
}

func TestConflictCoalescing(t *testing.T) {
	const iv = 100 * time.Millisecond
	t0 := time.Unix(1000, 0)
	at := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	var c conflictState
	sight := func() { c.pending++ }
	report := func(now time.Time) bool {
		if !c.ready(now, iv) {
			return false
		}
		c.pending, c.reported = 0, now
		return true
	}

	sight()
	if !report(at(0)) {
		t.Fatal("the first sighting is not reported at once")
	}
	sight()
	if report(at(50)) {
		t.Fatal("a second report within the interval")
	}
	if !report(at(100)) {
		t.Fatal("the sighting after a report is not reported once the interval passed")
	}
	if report(at(500)) {
		t.Fatal("a report without sightings")
	}
	if !c.stale(at(500), iv) {
		t.Fatal("a quiet conflict is kept forever")
	}
	sight()
	if c.stale(at(500), iv) {
		t.Fatal("a conflict with a pending sighting is forgotten")
	}
	if !report(at(500)) {
		t.Fatal("a sighting long after the last report waits")
	}
}
