package migrate

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ironlb/ironlb/api/v1alpha1"
)

// Severity says what a Note means for the user.
type Severity int

const (
	// Changed: expressed differently in ironlb, with the same effect.
	Changed Severity = iota
	// Action: ironlb needs something this tool cannot do (e.g. copy a Secret
	// it could not read); the note says what.
	Action
	// Dropped: ironlb has no equivalent; the behaviour differs as the note says.
	Dropped
)

func (s Severity) String() string {
	switch s {
	case Changed:
		return "changed"
	case Action:
		return "action"
	case Dropped:
		return "dropped"
	}
	return fmt.Sprintf("Severity(%d)", int(s))
}

// Note is one line of the migration report.
type Note struct {
	// Object is the MetalLB object, e.g. "BGPPeer metallb-system/spine1".
	Object string
	// Field is the MetalLB field, e.g. "spec.routerID"; empty for the object.
	Field    string
	Severity Severity
	Message  string
}

func (n Note) String() string {
	f := n.Object
	if n.Field != "" {
		f += " " + n.Field
	}
	return fmt.Sprintf("%-7s %s: %s", n.Severity, f, n.Message)
}

// Options tune Convert.
type Options struct {
	// Namespace is where ironlb's speakers run and read BGP password Secrets
	// (default "ironlb-system").
	Namespace string
	// Secret returns a Secret that a MetalLB BGPPeer's passwordSecret names, so
	// its password can be copied into Namespace. Nil (e.g. when reading files)
	// makes Convert ask the user to copy it (an Action note).
	Secret func(namespace, name string) (*corev1.Secret, error)
}

// Result is the ironlb configuration equivalent to a MetalLB one.
type Result struct {
	Pools   []v1alpha1.IPPool
	Peers   []v1alpha1.BGPPeer
	Secrets []corev1.Secret // BGP passwords, in Options.Namespace
	Notes   []Note          // sorted by object, then field
}

// Labels and annotations the migration writes.
const (
	// LabelMetalLBPeer on a migrated BGPPeer holds the MetalLB peer's name, so
	// that a pool's advertise.bgp.peerSelector can stand for the peer names of a
	// MetalLB BGPAdvertisement.
	LabelMetalLBPeer = "migrate.ironlb.io/metallb-peer"
	// AnnotationMigratedFrom on every written object names its MetalLB source.
	AnnotationMigratedFrom = "migrate.ironlb.io/from"
)

// Convert translates MetalLB objects into ironlb objects. It is a pure function
// of its input (and of what opts.Secret returns). Names are kept: an
// IPAddressPool becomes the IPPool of the same name (so Services annotated
// metallb.io/address-pool keep working) and a BGPPeer the BGPPeer of the same
// name. Settings without an ironlb equivalent are reported in Result.Notes;
// an error means the input is inconsistent (two pools of one name in different
// namespaces, an address MetalLB itself would refuse).
func Convert(m *MetalLB, opts Options) (*Result, error) {
	if opts.Namespace == "" {
		opts.Namespace = "ironlb-system"
	}
	c := &converter{m: m, opts: opts, res: &Result{}}
	if err := c.pools(); err != nil {
		return nil, err
	}
	c.l2()
	c.bgp()
	if err := c.peers(); err != nil {
		return nil, err
	}
	slices.SortStableFunc(c.res.Notes, func(a, b Note) int {
		return cmp.Or(strings.Compare(a.Object, b.Object), strings.Compare(a.Field, b.Field))
	})
	return c.res, nil
}

type converter struct {
	m     *MetalLB
	opts  Options
	res   *Result
	index map[string]int // pool name -> index in res.Pools
}

func (c *converter) note(obj, field string, sev Severity, format string, args ...any) {
	c.res.Notes = append(c.res.Notes, Note{Object: obj, Field: field, Severity: sev, Message: fmt.Sprintf(format, args...)})
}

func objectID(kind string, meta metav1.ObjectMeta) string {
	if meta.Namespace == "" {
		return kind + " " + meta.Name
	}
	return kind + " " + meta.Namespace + "/" + meta.Name
}

// migratedMeta is the metadata of an object written for src: same name and
// labels, an annotation naming the source.
func migratedMeta(id string, src metav1.ObjectMeta) metav1.ObjectMeta {
	var labels map[string]string
	if len(src.Labels) > 0 {
		labels = make(map[string]string, len(src.Labels))
		for k, v := range src.Labels {
			labels[k] = v
		}
	}
	return metav1.ObjectMeta{
		Name:        src.Name,
		Labels:      labels,
		Annotations: map[string]string{AnnotationMigratedFrom: "metallb.io " + id},
	}
}

func (c *converter) pools() error {
	seen := map[string]string{}
	pools := slices.Clone(c.m.Pools)
	slices.SortFunc(pools, func(a, b IPAddressPool) int { return strings.Compare(a.Name, b.Name) })
	c.index = map[string]int{}
	for _, p := range pools {
		id := objectID("IPAddressPool", p.ObjectMeta)
		if other, dup := seen[p.Name]; dup {
			return fmt.Errorf("%s and %s: ironlb's IPPools are cluster-scoped, two pools cannot share the name %q", other, id, p.Name)
		}
		seen[p.Name] = id
		out := v1alpha1.IPPool{
			TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.SchemeGroupVersion.String(), Kind: "IPPool"},
			ObjectMeta: migratedMeta(id, p.ObjectMeta),
		}
		if len(p.Spec.Addresses) == 0 {
			return fmt.Errorf("%s: no addresses", id)
		}
		for i, a := range p.Spec.Addresses {
			r, changed, err := addressRange(a)
			if err != nil {
				return fmt.Errorf("%s spec.addresses[%d]: %w", id, i, err)
			}
			if changed {
				c.note(id, fmt.Sprintf("spec.addresses[%d]", i), Changed, "%q is written %q (the network MetalLB reads it as)", a, r)
			}
			out.Spec.Addresses = append(out.Spec.Addresses, v1alpha1.AddressRange(r))
		}
		if p.Spec.AutoAssign != nil {
			v := *p.Spec.AutoAssign
			out.Spec.AutoAssign = &v
		}
		out.Spec.AvoidBuggyIPs = p.Spec.AvoidBuggyIPs
		if sa := p.Spec.ServiceAllocation; sa != nil {
			out.Spec.Allocation = c.allocation(id, sa)
		}
		c.index[p.Name] = len(c.res.Pools)
		c.res.Pools = append(c.res.Pools, out)
	}
	return nil
}

// addressRange normalises one MetalLB address entry: a CIDR (MetalLB ignores
// host bits; ironlb wants them clear) or a "first-last" range (spaces allowed).
func addressRange(s string) (r string, changed bool, err error) {
	s = strings.TrimSpace(s)
	if first, last, ok := strings.Cut(s, "-"); ok {
		a, err := netip.ParseAddr(strings.TrimSpace(first))
		if err != nil {
			return "", false, fmt.Errorf("range %q: %w", s, err)
		}
		b, err := netip.ParseAddr(strings.TrimSpace(last))
		if err != nil {
			return "", false, fmt.Errorf("range %q: %w", s, err)
		}
		a, b = a.Unmap(), b.Unmap()
		if a.Is4() != b.Is4() {
			return "", false, fmt.Errorf("range %q mixes IPv4 and IPv6", s)
		}
		if b.Less(a) {
			return "", false, fmt.Errorf("range %q: first address after the last", s)
		}
		r = a.String() + "-" + b.String()
		return r, strings.ReplaceAll(s, " ", "") != r, nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return "", false, fmt.Errorf("%q is neither a CIDR nor a first-last range", s)
	}
	if p.Addr().Is4In6() {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	r = p.Masked().String()
	return r, r != s, nil
}

// allocation translates serviceAllocation. MetalLB matches a Service when its
// namespace is listed or matched by any namespace selector, and (if any are
// given) any Service selector matches; ironlb's pool takes one list, one
// namespace selector and one Service selector, all of which must match.
func (c *converter) allocation(id string, sa *ServiceAllocation) *v1alpha1.AllocationSpec {
	out := &v1alpha1.AllocationSpec{}
	if sa.Priority != 0 {
		p := int32(sa.Priority)
		if sa.Priority < 0 {
			p = 0
			c.note(id, "spec.serviceAllocation.priority", Changed, "negative priority %d written as 0 (ironlb's lowest)", sa.Priority)
		}
		out.Priority = &p
	}
	out.Namespaces = slices.Clone(sa.Namespaces)
	if len(sa.NamespaceSelectors) > 0 {
		sel, ok := unionSelector(sa.NamespaceSelectors)
		switch {
		case len(sa.Namespaces) > 0:
			c.note(id, "spec.serviceAllocation.namespaceSelectors", Dropped,
				"MetalLB allows the listed namespaces OR those matching a selector; ironlb requires both to match, so the selectors were left out and only the namespaces %v may use the pool", sa.Namespaces)
		case !ok:
			out.NamespaceSelector = sa.NamespaceSelectors[0].DeepCopy()
			c.note(id, "spec.serviceAllocation.namespaceSelectors", Dropped,
				"%d selectors (any may match) cannot be written as one; kept the first, namespaces matched only by the others can no longer get new addresses from the pool (addresses they hold are kept)", len(sa.NamespaceSelectors))
		default:
			out.NamespaceSelector = sel
			if len(sa.NamespaceSelectors) > 1 {
				c.note(id, "spec.serviceAllocation.namespaceSelectors", Changed, "%d selectors written as one: %s", len(sa.NamespaceSelectors), metav1.FormatLabelSelector(sel))
			}
		}
	}
	if len(sa.ServiceSelectors) > 0 {
		sel, ok := unionSelector(sa.ServiceSelectors)
		if !ok {
			out.ServiceSelector = sa.ServiceSelectors[0].DeepCopy()
			c.note(id, "spec.serviceAllocation.serviceSelectors", Dropped,
				"%d selectors (any may match) cannot be written as one; kept the first, Services matched only by the others can no longer get new addresses from the pool (addresses they hold are kept)", len(sa.ServiceSelectors))
		} else {
			out.ServiceSelector = sel
			if len(sa.ServiceSelectors) > 1 {
				c.note(id, "spec.serviceAllocation.serviceSelectors", Changed, "%d selectors written as one: %s", len(sa.ServiceSelectors), metav1.FormatLabelSelector(sel))
			}
		}
	}
	if out.Priority == nil && len(out.Namespaces) == 0 && out.NamespaceSelector == nil && out.ServiceSelector == nil {
		return nil
	}
	return out
}
