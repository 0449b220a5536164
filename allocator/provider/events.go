package provider

import (
	"context"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/flowcontrol"
	"k8s.io/klog/v2"
)

// trailingSink lets Events trail behind the writes users wait for. A burst of
// Services costs the API server one status PATCH and one Event per Service; written
// at once, the Events compete with the Services' own creation and with the status
// writes. The sink accepts every Event at once (so the recorder never blocks or
// drops it) and writes them in order at up to qps per second: in steady state an
// Event is written immediately, during a burst the Events follow the addresses by a
// few seconds. The queue is bounded by maxQueued (beyond it an Event is dropped
// with a log line, as client-go's recorder would drop it).
type trailingSink struct {
	next    record.EventSink
	limiter flowcontrol.RateLimiter

	mu      sync.Mutex
	queue   []sinkOp
	wake    chan struct{}
	dropped int
}

// maxQueued bounds the Events waiting to be written (about 1 KiB each).
const maxQueued = 100000

type sinkOp struct {
	event *v1.Event
	patch []byte // nil: create
}

func newTrailingSink(next record.EventSink, qps float32, burst int) *trailingSink {
	return &trailingSink{
		next:    next,
		limiter: flowcontrol.NewTokenBucketRateLimiter(qps, burst),
		wake:    make(chan struct{}, 1),
	}
}

func (s *trailingSink) enqueue(op sinkOp) {
	s.mu.Lock()
	if len(s.queue) >= maxQueued {
		s.dropped++
		s.mu.Unlock()
		klog.InfoS("Event queue full; dropping an Event", "reason", op.event.Reason, "object", op.event.InvolvedObject.Name)
		return
	}
	s.queue = append(s.queue, op)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Create queues the Event and returns it as if written.
func (s *trailingSink) Create(e *v1.Event) (*v1.Event, error) {
	s.enqueue(sinkOp{event: e.DeepCopy()})
	return e, nil
}

// Update queues nothing: the recorder only patches (Update is part of the interface).
func (s *trailingSink) Update(e *v1.Event) (*v1.Event, error) { return s.next.Update(e) }

// Patch queues the patch behind the Event's creation.
func (s *trailingSink) Patch(old *v1.Event, data []byte) (*v1.Event, error) {
	s.enqueue(sinkOp{event: old.DeepCopy(), patch: data})
	return old, nil
}

// run writes queued Events until ctx ends.
func (s *trailingSink) run(ctx context.Context) {
	for {
		s.mu.Lock()
		if len(s.queue) == 0 {
			s.mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-s.wake:
				continue
			}
		}
		op := s.queue[0]
		s.queue[0] = sinkOp{}
		s.queue = s.queue[1:]
		s.mu.Unlock()
		if err := s.limiter.Wait(ctx); err != nil {
			return
		}
		var err error
		for attempt := range 3 {
			if op.patch != nil {
				_, err = s.next.Patch(op.event, op.patch)
			} else {
				_, err = s.next.Create(op.event)
			}
			if err == nil || ctx.Err() != nil {
				break
			}
			time.Sleep(time.Duration(attempt+1) * 200 * time.Millisecond)
		}
		if err != nil {
			klog.V(2).InfoS("Could not write an Event", "reason", op.event.Reason, "object", op.event.InvolvedObject.Name, "err", err)
		}
	}
}
