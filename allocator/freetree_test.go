package allocator

import (
	"math/rand/v2"
	"testing"
)

// TestFreeTreeRandom drives the tree with random takes and frees and compares it
// with a plain set after every step.
func TestFreeTreeRandom(t *testing.T) {
	for _, avoid := range []bool{false, true} {
		const size = 2048
		rng := rand.New(rand.NewPCG(7, 11))
		tr := newFreeTree(avoid)
		tr.insertInterval(u128{0, 100}, u128{0, 100 + size - 1})
		free := make(map[uint64]bool, size)
		for v := uint64(100); v < 100+size; v++ {
			free[v] = true
		}
		for step := 0; step < 20000; step++ {
			v := 100 + rng.Uint64N(size)
			switch rng.IntN(3) {
			case 0:
				if got := tr.take(u128{0, v}); got != free[v] {
					t.Fatalf("take(%d) = %v, want %v", v, got, free[v])
				}
				free[v] = false
			case 1:
				if got := tr.free(u128{0, v}); got == free[v] {
					t.Fatalf("free(%d) = %v with free=%v", v, got, free[v])
				}
				free[v] = true
			default:
				// take the lowest, as the allocator does
				lo, ok := tr.lowest()
				var want uint64
				found := false
				for w := uint64(100); w < 100+size; w++ {
					if free[w] && !(avoid && buggy(u128{0, w})) {
						want, found = w, true
						break
					}
				}
				if ok != found || (ok && lo.lo != want) {
					t.Fatalf("lowest = %v,%v want %d,%v", lo, ok, want, found)
				}
				if ok {
					tr.take(lo)
					free[lo.lo] = false
				}
			}
			if step%97 == 0 {
				checkTree(t, tr, free)
			}
		}
		checkTree(t, tr, free)
	}
}

func checkTree(t *testing.T, tr *freeTree, free map[uint64]bool) {
	t.Helper()
	got := map[uint64]bool{}
	var prevLast *u128
	tr.walk(func(first, last u128) {
		if prevLast != nil && !prevLast.addOne().less(first) {
			t.Fatalf("intervals touch: ..%v, %v..", *prevLast, first)
		}
		l := last
		prevLast = &l
		for v := first.lo; v <= last.lo; v++ {
			got[v] = true
		}
	})
	for v, f := range free {
		if f != got[v] {
			t.Fatalf("%d: tree %v, want %v", v, got[v], f)
		}
	}
	var rec func(n *treapNode) bool
	rec = func(n *treapNode) bool {
		if n == nil {
			return false
		}
		l, r := rec(n.left), rec(n.right)
		if (n.left != nil && n.left.prio > n.prio) || (n.right != nil && n.right.prio > n.prio) {
			t.Fatal("heap order broken")
		}
		_, good := tr.firstGood(n.first, n.last)
		if good != n.good || n.anyGood != (good || l || r) {
			t.Fatal("stale aggregate")
		}
		return n.anyGood
	}
	rec(tr.root)
}

func TestFreeTreeEdges(t *testing.T) {
	tr := newFreeTree(false)
	tr.insertInterval(u128{}, maxU128) // the whole IPv6 space is one node
	if v, ok := tr.lowest(); !ok || v != (u128{}) {
		t.Fatalf("lowest = %v", v)
	}
	if !tr.take(maxU128) || !tr.take(u128{}) || tr.take(maxU128) {
		t.Fatal("take at the ends")
	}
	if !tr.free(maxU128) || !tr.free(u128{}) || tr.free(u128{0, 5}) {
		t.Fatal("free at the ends")
	}
	n := 0
	tr.walk(func(first, last u128) {
		n++
		if first != (u128{}) || last != maxU128 {
			t.Fatalf("not merged back: %v..%v", first, last)
		}
	})
	if n != 1 {
		t.Fatalf("%d intervals", n)
	}

	// With avoidBuggy, a tree holding only .255/.0 crumbs has nothing to give.
	b := newFreeTree(true)
	b.insertInterval(u128{0, 255}, u128{0, 256})
	b.insertInterval(u128{0, 511}, u128{0, 512})
	if _, ok := b.lowest(); ok {
		t.Fatal("crumbs are allocatable")
	}
	b.free(u128{0, 513})
	if v, ok := b.lowest(); !ok || v.lo != 513 {
		t.Fatalf("lowest = %v %v", v, ok)
	}
}
