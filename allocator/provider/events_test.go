package provider

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

type recordingSink struct {
	mu  sync.Mutex
	ops []string
}

func (r *recordingSink) Create(e *v1.Event) (*v1.Event, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ops = append(r.ops, "create "+e.Name)
	return e, nil
}
func (r *recordingSink) Update(e *v1.Event) (*v1.Event, error) { return e, nil }
func (r *recordingSink) Patch(e *v1.Event, _ []byte) (*v1.Event, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ops = append(r.ops, "patch "+e.Name)
	return e, nil
}
func (r *recordingSink) snapshot() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.ops...)
}

// Every Event is written, in order, at the configured rate, and accepting one
// never blocks the recorder.
func TestTrailingSinkWritesAllInOrderAtRate(t *testing.T) {
	next := &recordingSink{}
	s := newTrailingSink(next, 200, 10)
	const n = 100
	start := time.Now()
	for i := range n {
		ev := &v1.Event{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("e%03d", i)}}
		if i%10 == 9 {
			_, _ = s.Patch(ev, []byte("{}"))
		} else {
			_, _ = s.Create(ev)
		}
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Fatalf("queueing %d Events took %v: the recorder must not wait for the API", n, d)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.run(ctx)
	deadline := time.Now().Add(10 * time.Second)
	for len(next.snapshot()) < n && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	ops := next.snapshot()
	if len(ops) != n {
		t.Fatalf("%d of %d Events written", len(ops), n)
	}
	for i, op := range ops {
		kind := "create"
		if i%10 == 9 {
			kind = "patch"
		}
		if want := fmt.Sprintf("%s e%03d", kind, i); op != want {
			t.Fatalf("op %d = %q, want %q (order lost)", i, op, want)
		}
	}
	// 100 Events at 200/s with a burst of 10 take at least (100-10)/200 s.
	if d := time.Since(start); d < 400*time.Millisecond {
		t.Fatalf("100 Events written in %v: the rate limit was not applied", d)
	}
}
