package speaker

import (
	"context"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ironlb/ironlb/speaker/membership"
)

type recordingMeta struct {
	mu      sync.Mutex
	metas   [][]netip.Addr
	entered chan struct{} // receives when SetMeta starts, if set
	block   chan struct{} // when set, SetMeta waits for it
}

func (r *recordingMeta) SetMeta(_ context.Context, m membership.Meta) (int, error) {
	if r.entered != nil {
		r.entered <- struct{}{}
		r.entered = nil
	}
	if r.block != nil {
		<-r.block
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.metas = append(r.metas, slices.Clone(m.Claims))
	return len(m.Claims), nil
}

func (r *recordingMeta) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.metas)
}

// The publisher publishes changed claims, skips unchanged ones, republishes
// when forced, coalesces to the latest while a publication is in flight, and
// publishes nothing after stop.
func TestPublisher(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	entered := make(chan struct{})
	r := &recordingMeta{entered: entered, block: make(chan struct{})}
	p := newPublisher(r)
	go p.run(ctx)
	a := []netip.Addr{netip.MustParseAddr("192.0.2.1")}
	b := []netip.Addr{netip.MustParseAddr("192.0.2.2")}
	c := []netip.Addr{netip.MustParseAddr("192.0.2.3")}
	p.publish(a, false)
	<-entered // a's SetMeta is in flight
	p.publish(b, false)
	p.publish(c, false) // b is superseded before it goes out
	close(r.block)
	waitCount := func(n int) {
		t.Helper()
		for i := 0; i < 500 && r.count() < n; i++ {
			time.Sleep(2 * time.Millisecond)
		}
		if r.count() != n {
			t.Fatalf("%d publications, want %d: %v", r.count(), n, r.metas)
		}
	}
	waitCount(2)
	p.publish(c, false) // unchanged: nothing
	p.publish(nil, true)
	waitCount(3)
	r.mu.Lock()
	want := [][]netip.Addr{a, c, c}
	for i := range want {
		if !slices.Equal(r.metas[i], want[i]) {
			t.Errorf("publication %d: %v, want %v", i, r.metas[i], want[i])
		}
	}
	r.mu.Unlock()
	p.stop()
	p.publish(b, false)
	p.publish(nil, true)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.want != p.done {
		t.Fatalf("publications requested after stop: %d requested, %d made", p.want, p.done)
	}
}
