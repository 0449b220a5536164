package allocator

// freeTree holds the free addresses of one family of one pool as disjoint,
// non-adjacent, inclusive intervals in a treap keyed by interval start. Expected
// depth is O(log n) for n intervals, so lowest, take and free are O(log n); memory
// is one node per interval whatever the interval sizes (a fresh /64 is one node).
//
// With avoidBuggy set (IPv4 only), addresses ending in .0 and .255 stay in the
// intervals but are never returned by lowest; every node records whether its
// interval holds an allocatable address and whether its subtree does, so lowest
// stays O(log n) even when the free space is fragmented into unusable crumbs.
type freeTree struct {
	root       *treapNode
	seed       uint64
	avoidBuggy bool
}

type treapNode struct {
	first, last u128
	prio        uint64
	left, right *treapNode
	good        bool // the interval holds an allocatable address
	anyGood     bool // good or some node below is
}

func newFreeTree(avoidBuggy bool) *freeTree {
	return &freeTree{seed: 0x9e3779b97f4a7c15, avoidBuggy: avoidBuggy}
}

// rand is xorshift64*: deterministic priorities keep runs reproducible.
func (t *freeTree) rand() uint64 {
	t.seed ^= t.seed >> 12
	t.seed ^= t.seed << 25
	t.seed ^= t.seed >> 27
	return t.seed * 2685821657736338717
}

func buggy(v u128) bool { b := v.lo & 0xff; return b == 0 || b == 0xff }

// firstGood returns the lowest allocatable address in [first, last].
func (t *freeTree) firstGood(first, last u128) (u128, bool) {
	if !t.avoidBuggy {
		return first, true
	}
	// At most three steps: x.255, x+1.0, x+1.1.
	for v := first; ; v = v.addOne() {
		if !buggy(v) {
			return v, true
		}
		if v == last {
			return u128{}, false
		}
	}
}

func (t *freeTree) fix(n *treapNode) {
	_, n.good = t.firstGood(n.first, n.last)
	n.anyGood = n.good || (n.left != nil && n.left.anyGood) || (n.right != nil && n.right.anyGood)
}

// lowest returns the lowest allocatable free address. O(log n).
func (t *freeTree) lowest() (u128, bool) {
	n := t.root
	if n == nil || !n.anyGood {
		return u128{}, false
	}
	for {
		if n.left != nil && n.left.anyGood {
			n = n.left
			continue
		}
		if n.good {
			return t.firstGood(n.first, n.last)
		}
		n = n.right
	}
}

// contains reports whether v is free. O(log n).
func (t *freeTree) contains(v u128) bool {
	n := t.root
	for n != nil {
		switch {
		case v.less(n.first):
			n = n.left
		case n.last.less(v):
			n = n.right
		default:
			return true
		}
	}
	return false
}

// insertInterval adds [first, last], which must not overlap or touch a free
// interval (the pool builder merges ranges first). O(log n).
func (t *freeTree) insertInterval(first, last u128) {
	nn := &treapNode{first: first, last: last, prio: t.rand()}
	t.fix(nn)
	t.root = t.insert(t.root, nn)
}

func (t *freeTree) insert(n, nn *treapNode) *treapNode {
	if n == nil {
		return nn
	}
	if nn.first.less(n.first) {
		n.left = t.insert(n.left, nn)
		if n.left.prio > n.prio {
			n = t.rotateRight(n)
		}
	} else {
		n.right = t.insert(n.right, nn)
		if n.right.prio > n.prio {
			n = t.rotateLeft(n)
		}
	}
	t.fix(n)
	return n
}

func (t *freeTree) rotateRight(n *treapNode) *treapNode {
	l := n.left
	n.left = l.right
	t.fix(n)
	l.right = n
	t.fix(l)
	return l
}

func (t *freeTree) rotateLeft(n *treapNode) *treapNode {
	r := n.right
	n.right = r.left
	t.fix(n)
	r.left = n
	t.fix(r)
	return r
}

func (t *freeTree) merge(a, b *treapNode) *treapNode {
	switch {
	case a == nil:
		return b
	case b == nil:
		return a
	case a.prio > b.prio:
		a.right = t.merge(a.right, b)
		t.fix(a)
		return a
	default:
		b.left = t.merge(a, b.left)
		t.fix(b)
		return b
	}
}

// take removes v from the free set; it reports false if v was not free. O(log n).
func (t *freeTree) take(v u128) bool {
	var split *treapNode
	root, ok := t.takeAt(t.root, v, &split)
	t.root = root
	if split != nil {
		split.prio = t.rand()
		t.fix(split)
		t.root = t.insert(t.root, split)
	}
	return ok
}

func (t *freeTree) takeAt(n *treapNode, v u128, split **treapNode) (*treapNode, bool) {
	if n == nil {
		return nil, false
	}
	var ok bool
	switch {
	case v.less(n.first):
		n.left, ok = t.takeAt(n.left, v, split)
	case n.last.less(v):
		n.right, ok = t.takeAt(n.right, v, split)
	default:
		ok = true
		switch {
		case n.first == n.last:
			return t.merge(n.left, n.right), true
		case v == n.first:
			n.first = v.addOne()
		case v == n.last:
			n.last = v.subOne()
		default:
			// The upper part becomes a new node; it is the smallest key of the right
			// subtree, so it is inserted from the root once this path is fixed.
			*split = &treapNode{first: v.addOne(), last: n.last}
			n.last = v.subOne()
		}
	}
	if ok {
		t.fix(n)
	}
	return n, ok
}

// free returns v to the free set, merging with neighbours; it reports false if v
// was already free. O(log n).
func (t *freeTree) free(v u128) bool {
	var pred, succ *treapNode
	for n := t.root; n != nil; {
		if v.less(n.first) {
			succ = n
			n = n.left
		} else {
			pred = n
			n = n.right
		}
	}
	if pred != nil && !pred.last.less(v) {
		return false
	}
	joinPred := pred != nil && pred.last.addOne() == v
	joinSucc := succ != nil && v.addOne() == succ.first
	switch {
	case joinPred && joinSucc:
		last := succ.last
		t.root = t.remove(t.root, succ.first)
		t.root = t.update(t.root, pred.first, func(n *treapNode) { n.last = last })
	case joinPred:
		t.root = t.update(t.root, pred.first, func(n *treapNode) { n.last = v })
	case joinSucc:
		t.root = t.update(t.root, succ.first, func(n *treapNode) { n.first = v })
	default:
		t.insertInterval(v, v)
	}
	return true
}

// update applies f to the node keyed first and fixes the path. f may move the
// node's bounds as long as the intervals stay ordered and disjoint.
func (t *freeTree) update(n *treapNode, first u128, f func(*treapNode)) *treapNode {
	if n == nil {
		return nil
	}
	switch c := first.cmp(n.first); {
	case c < 0:
		n.left = t.update(n.left, first, f)
	case c > 0:
		n.right = t.update(n.right, first, f)
	default:
		f(n)
	}
	t.fix(n)
	return n
}

func (t *freeTree) remove(n *treapNode, first u128) *treapNode {
	if n == nil {
		return nil
	}
	switch c := first.cmp(n.first); {
	case c < 0:
		n.left = t.remove(n.left, first)
	case c > 0:
		n.right = t.remove(n.right, first)
	default:
		return t.merge(n.left, n.right)
	}
	t.fix(n)
	return n
}

// walk calls f for each interval in order (tests and debugging).
func (t *freeTree) walk(f func(first, last u128)) {
	var rec func(*treapNode)
	rec = func(n *treapNode) {
		if n == nil {
			return
		}
		rec(n.left)
		f(n.first, n.last)
		rec(n.right)
	}
	rec(t.root)
}
