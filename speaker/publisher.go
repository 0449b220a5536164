package speaker

import (
	"context"
	"net/netip"
	"slices"
	"sync"
	"time"

	"k8s.io/klog/v2"

	"github.com/ironlb/ironlb/speaker/membership"
)

// publisher publishes this node's claims in its memberlist metadata on its own
// goroutine: SetMeta waits for a peer to take the update, which must not hold
// up the event loop. Only the latest claims are published; a forced publish
// republishes them unchanged (a new incarnation, gossiped again), which is how
// an owner answers Changes.Contested.
type publisher struct {
	c    metaSetter
	kick chan struct{}

	mu      sync.Mutex
	claims  []netip.Addr
	want    uint64 // publications requested
	done    uint64 // publications made
	stopped bool
	busy    sync.WaitGroup
}

// publishTimeout bounds one SetMeta.
const publishTimeout = time.Second

// metaSetter is what the publisher needs of *membership.Cluster.
type metaSetter interface {
	SetMeta(ctx context.Context, m membership.Meta) (int, error)
}

func newPublisher(c metaSetter) *publisher {
	return &publisher{c: c, kick: make(chan struct{}, 1)}
}

// publish asks for claims to be published; nil claims with force republishes
// the last ones. Equal claims are not published again unless forced.
func (p *publisher) publish(claims []netip.Addr, force bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return
	}
	if !force {
		if p.want > 0 && slices.Equal(claims, p.claims) {
			return
		}
		p.claims = slices.Clone(claims)
	}
	p.want++
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// stop ends publishing and waits for a publication in flight, so that it
// cannot overwrite the leaving flag membership.Leave publishes.
func (p *publisher) stop() {
	p.mu.Lock()
	p.stopped = true
	p.mu.Unlock()
	p.busy.Wait()
}

func (p *publisher) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.kick:
		}
		p.mu.Lock()
		if p.stopped || p.done == p.want {
			p.mu.Unlock()
			continue
		}
		claims, want := slices.Clone(p.claims), p.want
		p.busy.Add(1)
		p.mu.Unlock()
		pctx, cancel := context.WithTimeout(ctx, publishTimeout)
		n, err := p.c.SetMeta(pctx, membership.Meta{Claims: claims})
		cancel()
		p.busy.Done()
		if err != nil {
			klog.V(2).InfoS("Publishing claims: no peer took the update in time (it stands and is gossiped)", "claims", len(claims), "err", err)
		}
		if n < len(claims) {
			klog.InfoS("Not all claims fit in the memberlist metadata", "published", n, "claims", len(claims))
		}
		p.mu.Lock()
		p.done = want
		if p.done != p.want {
			select {
			case p.kick <- struct{}{}:
			default:
			}
		}
		p.mu.Unlock()
	}
}
