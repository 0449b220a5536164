package migrate

import (
	"fmt"
	"maps"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/ironlb/ironlb/api/v1alpha1"
)

// unionSelector writes "any of sels matches" as one selector when that is
// possible: no selectors or an empty one (everything) give nil; equal
// selectors give one of them; selectors that each test one key for one set of
// values (matchLabels {k: v} or matchExpressions [{k In [...]}]) give
// {k In union}. ok is false when the union cannot be written as one selector.
func unionSelector(sels []metav1.LabelSelector) (*metav1.LabelSelector, bool) {
	if len(sels) == 0 {
		return nil, true
	}
	for _, s := range sels {
		if len(s.MatchLabels) == 0 && len(s.MatchExpressions) == 0 {
			return nil, true
		}
	}
	allEqual := true
	for _, s := range sels[1:] {
		if !reflect.DeepEqual(s, sels[0]) {
			allEqual = false
		}
	}
	if allEqual {
		return sels[0].DeepCopy(), true
	}
	key := ""
	var values []string
	for _, s := range sels {
		k, vs, ok := singleKeyIn(s)
		if !ok || (key != "" && k != key) {
			return nil, false
		}
		key = k
		values = append(values, vs...)
	}
	slices.Sort(values)
	values = slices.Compact(values)
	return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: key, Operator: metav1.LabelSelectorOpIn, Values: values}}}, true
}

// singleKeyIn reports whether s is "label k has one of values".
func singleKeyIn(s metav1.LabelSelector) (key string, values []string, ok bool) {
	switch {
	case len(s.MatchLabels) == 1 && len(s.MatchExpressions) == 0:
		for k, v := range s.MatchLabels {
			return k, []string{v}, true
		}
	case len(s.MatchLabels) == 0 && len(s.MatchExpressions) == 1 && s.MatchExpressions[0].Operator == metav1.LabelSelectorOpIn:
		return s.MatchExpressions[0].Key, s.MatchExpressions[0].Values, true
	}
	return "", nil, false
}

// selectedPools are the pools (by name, sorted) an advertisement in namespace ns
// applies to: those it names and those its selectors match; with neither, all
// pools of its namespace.
func (c *converter) selectedPools(id, ns string, names []string, sels []metav1.LabelSelector) []string {
	var out []string
	byName := map[string]bool{}
	for _, p := range c.m.Pools {
		if p.Namespace == ns {
			byName[p.Name] = true
		}
	}
	if len(names) == 0 && len(sels) == 0 {
		for n := range byName {
			out = append(out, n)
		}
		slices.Sort(out)
		return out
	}
	for _, n := range names {
		if !byName[n] {
			c.note(id, "spec.ipAddressPools", Dropped, "names IPAddressPool %q, which is not among the objects read", n)
			continue
		}
		out = append(out, n)
	}
	for i, s := range sels {
		sel, err := metav1.LabelSelectorAsSelector(&s)
		if err != nil {
			c.note(id, fmt.Sprintf("spec.ipAddressPoolSelectors[%d]", i), Dropped, "invalid selector: %v", err)
			continue
		}
		for _, p := range c.m.Pools {
			if p.Namespace == ns && sel.Matches(labels.Set(p.Labels)) {
				out = append(out, p.Name)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// l2 sets advertise.l2 of every pool some L2Advertisement selects. Several
// advertisements of one pool are merged: a node or interface any of them
// allows is allowed.
func (c *converter) l2() {
	type adv struct {
		id    string
		nodes []metav1.LabelSelector
		ifs   []string
	}
	perPool := map[string][]adv{}
	ads := slices.Clone(c.m.L2Advertisements)
	slices.SortFunc(ads, func(a, b L2Advertisement) int { return strings.Compare(a.Name, b.Name) })
	for _, a := range ads {
		id := objectID("L2Advertisement", a.ObjectMeta)
		for _, p := range c.selectedPools(id, a.Namespace, a.Spec.IPAddressPools, a.Spec.IPAddressPoolSelectors) {
			perPool[p] = append(perPool[p], adv{id, a.Spec.NodeSelectors, a.Spec.Interfaces})
		}
	}
	for _, pool := range slices.Sorted(maps.Keys(perPool)) {
		list := perPool[pool]
		out := &v1alpha1.L2Advertisement{}
		var nodes []metav1.LabelSelector
		allNodes, allIfs := false, false
		var ifs []string
		var ids []string
		for _, a := range list {
			ids = append(ids, a.id)
			if len(a.nodes) == 0 {
				allNodes = true
			}
			nodes = append(nodes, a.nodes...)
			if len(a.ifs) == 0 {
				allIfs = true
			}
			ifs = append(ifs, a.ifs...)
		}
		if !allNodes {
			out.NodeSelector = c.nodeUnion(list[0].id, nodes, "spec.nodeSelectors", "announce the pool's addresses", ids)
		}
		if !allIfs {
			slices.Sort(ifs)
			out.Interfaces = slices.Compact(ifs)
		}
		c.poolAdvertise(pool).L2 = out
	}
}

// nodeUnion writes the union of node selectors as one, or keeps the first and
// reports the rest.
func (c *converter) nodeUnion(id string, sels []metav1.LabelSelector, field, what string, ids []string) *metav1.LabelSelector {
	sel, ok := unionSelector(sels)
	if ok {
		if len(sels) > 1 {
			c.note(id, field, Changed, "%d node selectors (of %s) written as one: %s", len(sels), strings.Join(ids, ", "), metav1.FormatLabelSelector(sel))
		}
		return sel
	}
	c.note(id, field, Dropped, "%d node selectors (of %s; any may match) cannot be written as one; kept %s: nodes matched only by the others no longer %s",
		len(sels), strings.Join(ids, ", "), metav1.FormatLabelSelector(&sels[0]), what)
	return sels[0].DeepCopy()
}

func (c *converter) poolAdvertise(pool string) *v1alpha1.AdvertiseSpec {
	p := &c.res.Pools[c.index[pool]]
	if p.Spec.Advertise == nil {
		p.Spec.Advertise = &v1alpha1.AdvertiseSpec{}
	}
	return p.Spec.Advertise
}

// bgpAttrs are the path attributes of a BGPAdvertisement: advertisements of one
// pool can only be merged when these are equal.
type bgpAttrs struct {
	aggLen, aggLenV6 int32
	localPref        uint32
	communities      string // sorted, joined
	large            string
}

// bgp sets advertise.bgp of every pool some BGPAdvertisement selects.
// Advertisements of one pool with equal attributes are merged (any node, any
// peer); ironlb announces a pool one way, so a second set of attributes (e.g.
// an aggregate to one peer beside the /32s to another) is reported, not kept.
func (c *converter) bgp() {
	type adv struct {
		id    string
		attrs bgpAttrs
		comm  []v1alpha1.Community
		large []v1alpha1.LargeCommunity
		nodes []metav1.LabelSelector
		peers []string
	}
	perPool := map[string][]adv{}
	ads := slices.Clone(c.m.BGPAdvertisements)
	slices.SortFunc(ads, func(a, b BGPAdvertisement) int { return strings.Compare(a.Name, b.Name) })
	for _, a := range ads {
		id := objectID("BGPAdvertisement", a.ObjectMeta)
		comm, large := c.communities(id, a.Namespace, a.Spec.Communities)
		at := bgpAttrs{aggLen: 32, aggLenV6: 128, localPref: a.Spec.LocalPref}
		if a.Spec.AggregationLength != nil {
			at.aggLen = *a.Spec.AggregationLength
		}
		if a.Spec.AggregationLengthV6 != nil {
			at.aggLenV6 = *a.Spec.AggregationLengthV6
		}
		at.communities = fmt.Sprint(comm)
		at.large = fmt.Sprint(large)
		for _, pr := range a.Spec.Peers {
			if !slices.ContainsFunc(c.m.Peers, func(p BGPPeer) bool { return p.Name == pr }) {
				c.note(id, "spec.peers", Dropped, "names BGPPeer %q, which is not among the objects read", pr)
			}
		}
		for _, p := range c.selectedPools(id, a.Namespace, a.Spec.IPAddressPools, a.Spec.IPAddressPoolSelectors) {
			perPool[p] = append(perPool[p], adv{id, at, comm, large, a.Spec.NodeSelectors, a.Spec.Peers})
		}
	}
	for _, pool := range slices.Sorted(maps.Keys(perPool)) {
		list := perPool[pool]
		first := list[0]
		var kept []adv
		for _, a := range list {
			if a.attrs == first.attrs {
				kept = append(kept, a)
				continue
			}
			c.note(a.id, "", Dropped, "IPPool %s is announced with the attributes of %s (aggregation /%d, /%d, local-pref %d, communities %s %s); ironlb announces a pool one way, so this advertisement's (aggregation /%d, /%d, local-pref %d, communities %s %s) is not migrated",
				pool, first.id, first.attrs.aggLen, first.attrs.aggLenV6, first.attrs.localPref, first.attrs.communities, first.attrs.large,
				a.attrs.aggLen, a.attrs.aggLenV6, a.attrs.localPref, a.attrs.communities, a.attrs.large)
		}
		out := &v1alpha1.BGPAdvertisement{}
		if first.attrs.aggLen != 32 {
			v := first.attrs.aggLen
			out.AggregationLength = &v
		}
		if first.attrs.aggLenV6 != 128 {
			v := first.attrs.aggLenV6
			out.AggregationLengthV6 = &v
		}
		if first.attrs.localPref != 0 {
			v := first.attrs.localPref
			out.LocalPref = &v
		}
		out.Communities, out.LargeCommunities = first.comm, first.large
		var nodes []metav1.LabelSelector
		var peers, ids []string
		allNodes, allPeers := false, false
		for _, a := range kept {
			ids = append(ids, a.id)
			if len(a.nodes) == 0 {
				allNodes = true
			}
			nodes = append(nodes, a.nodes...)
			if len(a.peers) == 0 {
				allPeers = true
			}
			peers = append(peers, a.peers...)
		}
		if !allNodes {
			out.NodeSelector = c.nodeUnion(first.id, nodes, "spec.nodeSelectors", "advertise the pool's addresses", ids)
		}
		if !allPeers {
			slices.Sort(peers)
			out.PeerSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
				Key: LabelMetalLBPeer, Operator: metav1.LabelSelectorOpIn, Values: slices.Compact(peers),
			}}}
			c.note(first.id, "spec.peers", Changed, "peers %v written as peerSelector %s (every migrated BGPPeer carries the label %s=<its MetalLB name>)",
				slices.Compact(peers), metav1.FormatLabelSelector(out.PeerSelector), LabelMetalLBPeer)
		}
		c.poolAdvertise(pool).BGP = out
	}
}

var (
	standardCommunity = regexp.MustCompile(`^([0-9]{1,5}):([0-9]{1,5})$`)
	largeCommunity    = regexp.MustCompile(`^([0-9]{1,10}):([0-9]{1,10}):([0-9]{1,10})$`)
)

// communities resolves a BGPAdvertisement's communities: "65535:65282",
// "large:1:2:3", or the name of an alias from a Community object of the same
// namespace.
func (c *converter) communities(id, ns string, in []string) ([]v1alpha1.Community, []v1alpha1.LargeCommunity) {
	aliases := map[string]string{}
	for _, cm := range c.m.Communities {
		if cm.Namespace != ns {
			continue
		}
		for _, a := range cm.Spec.Communities {
			aliases[a.Name] = a.Value
		}
	}
	var std []v1alpha1.Community
	var large []v1alpha1.LargeCommunity
	for i, raw := range in {
		field := fmt.Sprintf("spec.communities[%d]", i)
		v := strings.TrimSpace(raw)
		if alias, ok := aliases[v]; ok {
			c.note(id, field, Changed, "alias %q written as its value %q", v, alias)
			v = strings.TrimSpace(alias)
		}
		if rest, ok := strings.CutPrefix(v, "large:"); ok {
			if m := largeCommunity.FindStringSubmatch(rest); m != nil && allFit(m[1:], 32) {
				large = append(large, v1alpha1.LargeCommunity(rest))
				continue
			}
			c.note(id, field, Dropped, "%q is not a large community global:local1:local2 (each 0-4294967295); not migrated", raw)
			continue
		}
		if m := standardCommunity.FindStringSubmatch(v); m != nil && allFit(m[1:], 16) {
			std = append(std, v1alpha1.Community(v))
			continue
		}
		c.note(id, field, Dropped, "%q is neither a community ASN:value, a large:... community nor an alias of a Community object in %s; not migrated", raw, ns)
	}
	slices.Sort(std)
	slices.Sort(large)
	return slices.Compact(std), slices.Compact(large)
}

func allFit(nums []string, bits int) bool {
	for _, n := range nums {
		if _, err := strconv.ParseUint(n, 10, bits); err != nil {
			return false
		}
	}
	return true
}
