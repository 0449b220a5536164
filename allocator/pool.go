package allocator

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/ironlb/ironlb/api/v1alpha1"
)

// interval is an inclusive block of one family as numbers.
type interval struct{ first, last u128 }

// pool is the compiled form of an IPPool: merged ranges per family, pre-parsed
// selectors and the free-space index.
type pool struct {
	name       string
	autoAssign bool
	avoidBuggy bool
	priority   *int32

	namespaces map[string]struct{} // nil: any namespace
	nsSel      labels.Selector     // nil: any namespace labels
	svcSel     labels.Selector     // nil: any Service labels

	ranges [2][]interval // per family, sorted, merged (neither overlapping nor adjacent)
	free   [2]*freeTree  // per family
	total  [2]u128       // allocatable addresses per family, saturating

	assigned [2]int64 // held addresses this pool covers (whoever allocated them)
	orphaned int      // held addresses allocated from this pool that it no longer covers
}

// compilePool validates spec and builds a pool with every address free.
func compilePool(p *v1alpha1.IPPool) (*pool, error) {
	if p == nil {
		return nil, errors.New("nil IPPool")
	}
	if p.Name == "" {
		return nil, errors.New("IPPool has no name")
	}
	spec := &p.Spec
	if len(spec.Addresses) == 0 {
		return nil, fmt.Errorf("pool %q: spec.addresses is empty", p.Name)
	}
	np := &pool{
		name:       p.Name,
		autoAssign: spec.AutoAssign == nil || *spec.AutoAssign,
		avoidBuggy: spec.AvoidBuggyIPs,
	}
	var errs []error
	for i, s := range spec.Addresses {
		r, err := ParseRange(string(s))
		if err != nil {
			errs = append(errs, fmt.Errorf("spec.addresses[%d]: %w", i, err))
			continue
		}
		f := familyOf(r.First)
		np.ranges[f] = append(np.ranges[f], interval{toU128(r.First), toU128(r.Last)})
	}
	if al := spec.Allocation; al != nil {
		if al.Priority != nil {
			prio := *al.Priority
			np.priority = &prio
		}
		if len(al.Namespaces) > 0 {
			np.namespaces = make(map[string]struct{}, len(al.Namespaces))
			for _, ns := range al.Namespaces {
				np.namespaces[ns] = struct{}{}
			}
		}
		var err error
		if np.nsSel, err = compileSelector(al.NamespaceSelector); err != nil {
			errs = append(errs, fmt.Errorf("spec.allocation.namespaceSelector: %w", err))
		}
		if np.svcSel, err = compileSelector(al.ServiceSelector); err != nil {
			errs = append(errs, fmt.Errorf("spec.allocation.serviceSelector: %w", err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("pool %q: %w", p.Name, err)
	}
	for f := range np.ranges {
		np.ranges[f] = mergeIntervals(np.ranges[f])
		t := newFreeTree(np.avoidBuggy && family(f) == fam4)
		for _, iv := range np.ranges[f] {
			t.insertInterval(iv.first, iv.last)
			np.total[f] = np.total[f].addSat(iv.last.sub(iv.first)).addSat(u128{0, 1})
			if t.avoidBuggy {
				np.total[f] = np.total[f].sub(u128{0, uint64(buggyCount(iv.first.lo, iv.last.lo))})
			}
		}
		np.free[f] = t
	}
	return np, nil
}

// compileSelector parses sel once; nil and empty selectors match everything and
// are returned as nil so matching them costs nothing.
func compileSelector(sel *metav1.LabelSelector) (labels.Selector, error) {
	if sel == nil || (len(sel.MatchLabels) == 0 && len(sel.MatchExpressions) == 0) {
		return nil, nil
	}
	return metav1.LabelSelectorAsSelector(sel)
}

func mergeIntervals(ivs []interval) []interval {
	if len(ivs) < 2 {
		return ivs
	}
	slices.SortFunc(ivs, func(a, b interval) int { return a.first.cmp(b.first) })
	out := ivs[:1]
	for _, iv := range ivs[1:] {
		last := &out[len(out)-1]
		// Overlapping, or adjacent (the overlap test comes first, so addOne never
		// wraps here).
		if !last.last.less(iv.first) || last.last.addOne() == iv.first {
			if last.last.less(iv.last) {
				last.last = iv.last
			}
			continue
		}
		out = append(out, iv)
	}
	return out
}

// buggyCount counts IPv4 addresses ending in .0 or .255 in [first, last].
func buggyCount(first, last uint64) uint64 {
	upTo := func(x int64, r int64) int64 { // how many v in [0, x] have v%256 == r
		if x < r {
			return 0
		}
		return (x-r)/256 + 1
	}
	var n int64
	for _, r := range []int64{0, 255} {
		n += upTo(int64(last), r) - upTo(int64(first)-1, r)
	}
	return uint64(n)
}

// covers reports whether the pool may hand out a: a is in one of its ranges and
// not skipped by avoidBuggyIPs. O(log R).
func (p *pool) covers(a netip.Addr) bool {
	f := familyOf(a)
	v := toU128(a)
	if f == fam4 && p.avoidBuggy && buggy(v) {
		return false
	}
	return inIntervals(p.ranges[f], v)
}

func inIntervals(ivs []interval, v u128) bool {
	i, _ := slices.BinarySearchFunc(ivs, v, func(iv interval, v u128) int { return iv.last.cmp(v) })
	return i < len(ivs) && !v.less(ivs[i].first)
}

// hasFamily reports whether the pool has any address of family f.
func (p *pool) hasFamily(f family) bool { return len(p.ranges[f]) > 0 }

// allows reports whether svc may use the pool. O(1) map lookups plus the
// pre-parsed selectors' requirements.
func (p *pool) allows(svc *v1.Service, nsLabels labels.Set) bool {
	if p.namespaces != nil {
		if _, ok := p.namespaces[svc.Namespace]; !ok {
			return false
		}
	}
	if p.nsSel != nil && !p.nsSel.Matches(nsLabels) {
		return false
	}
	if p.svcSel != nil && !p.svcSel.Matches(labels.Set(svc.Labels)) {
		return false
	}
	return true
}

// overlaps reports whether p and q share an address. O(R) for R ranges.
func (p *pool) overlaps(q *pool) bool {
	for f := range p.ranges {
		a, b := p.ranges[f], q.ranges[f]
		for i, j := 0, 0; i < len(a) && j < len(b); {
			switch {
			case a[i].last.less(b[j].first):
				i++
			case b[j].last.less(a[i].first):
				j++
			default:
				return true
			}
		}
	}
	return false
}

// lessPool orders pools for automatic assignment: priority ascending, pools
// without a priority last, then by name.
func lessPool(a, b *pool) int {
	switch {
	case a.priority != nil && b.priority != nil:
		if c := cmp.Compare(*a.priority, *b.priority); c != 0 {
			return c
		}
	case a.priority != nil:
		return -1
	case b.priority != nil:
		return 1
	}
	return cmp.Compare(a.name, b.name)
}
