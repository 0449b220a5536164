package allocator

import (
	"container/heap"
	"slices"
)

// overlapCache holds which pools share addresses, computed for all pools at once
// and dropped on every pool change.
type overlapCache struct {
	valid  bool
	byPool map[string][]string // pool -> sorted names of the pools it overlaps
}

func (c *overlapCache) invalidate() { c.valid, c.byPool = false, nil }

// of returns the pools overlapping name, computing the relation when needed.
func (c *overlapCache) of(order []*pool, name string) []string {
	if !c.valid {
		c.byPool = computeOverlaps(order)
		c.valid = true
	}
	return c.byPool[name]
}

// span is one merged range of one pool.
type span struct {
	first, last u128
	pool        *pool
}

// endHeap is a min-heap of spans by last address.
type endHeap []span

func (h endHeap) Len() int           { return len(h) }
func (h endHeap) Less(i, j int) bool { return h[i].last.less(h[j].last) }
func (h endHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *endHeap) Push(x any)        { *h = append(*h, x.(span)) }
func (h *endHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// computeOverlaps finds every pair of pools with a common address by a sweep over
// all ranges sorted by first address, keeping the ranges still open in a heap by
// last address: O(N log N + K) for N ranges and K overlapping range pairs. A
// pool's own ranges are merged, so every pair found is between two pools.
func computeOverlaps(order []*pool) map[string][]string {
	pairs := map[string]map[string]struct{}{}
	add := func(a, b string) {
		if pairs[a] == nil {
			pairs[a] = map[string]struct{}{}
		}
		pairs[a][b] = struct{}{}
	}
	for f := range 2 {
		var spans []span
		for _, p := range order {
			for _, iv := range p.ranges[f] {
				spans = append(spans, span{iv.first, iv.last, p})
			}
		}
		slices.SortFunc(spans, func(a, b span) int { return a.first.cmp(b.first) })
		var open endHeap
		for _, s := range spans {
			for open.Len() > 0 && open[0].last.less(s.first) {
				heap.Pop(&open)
			}
			for _, o := range open {
				if o.pool != s.pool {
					add(o.pool.name, s.pool.name)
					add(s.pool.name, o.pool.name)
				}
			}
			heap.Push(&open, s)
		}
	}
	out := make(map[string][]string, len(pairs))
	for name, others := range pairs {
		list := make([]string, 0, len(others))
		for o := range others {
			list = append(list, o)
		}
		slices.Sort(list)
		out[name] = list
	}
	return out
}
