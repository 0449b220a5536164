package migrate

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/ironlb/ironlb/allocator"
	"github.com/ironlb/ironlb/api/v1alpha1"
)

func readFiles(t *testing.T, files ...string) *MetalLB {
	t.Helper()
	var m MetalLB
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join("testdata", "metallb", f))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := m.Read(bytes.NewReader(b), f); err != nil {
			t.Fatal(err)
		}
	}
	return &m
}

func convert(t *testing.T, m *MetalLB, opts Options) *Result {
	t.Helper()
	res, err := Convert(m, opts)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func pool(t *testing.T, res *Result, name string) v1alpha1.IPPool {
	t.Helper()
	for _, p := range res.Pools {
		if p.Name == name {
			return p
		}
	}
	t.Fatalf("no IPPool %s in %v", name, res.Pools)
	return v1alpha1.IPPool{}
}

func peer(res *Result, name string) (v1alpha1.BGPPeer, bool) {
	for _, p := range res.Peers {
		if p.Name == name {
			return p, true
		}
	}
	return v1alpha1.BGPPeer{}, false
}

// notes returns the notes about object (e.g. "BGPPeer metallb-system/spine").
func notes(res *Result, object string, sev Severity) []string {
	var out []string
	for _, n := range res.Notes {
		if n.Object == object && n.Severity == sev {
			out = append(out, n.Field+": "+n.Message)
		}
	}
	return out
}

func hasNote(res *Result, object, field string, sev Severity, substr string) bool {
	for _, n := range res.Notes {
		if n.Object == object && n.Field == field && n.Severity == sev && strings.Contains(n.Message, substr) {
			return true
		}
	}
	return false
}

func selects(t *testing.T, sel *metav1.LabelSelector, lbls map[string]string) bool {
	t.Helper()
	if sel == nil {
		return true
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		t.Fatal(err)
	}
	return s.Matches(labels.Set(lbls))
}

// The L2 example: the pool keeps its name and addresses, and is announced
// from the nodes and the interface MetalLB announced it from.
func TestL2Example(t *testing.T) {
	res := convert(t, readFiles(t, "l2.yaml"), Options{})
	lan := pool(t, res, "lan")
	if got := strings.Join(addrs(lan), " "); got != "192.0.2.200-192.0.2.250 2001:db8::200-2001:db8::2ff 192.0.2.64/27" {
		t.Errorf("addresses %s", got)
	}
	l2 := lan.Spec.Advertise.L2
	if l2 == nil || lan.Spec.Advertise.BGP != nil {
		t.Fatalf("advertise %+v: want L2 only", lan.Spec.Advertise)
	}
	if !slices.Equal(l2.Interfaces, []string{"eth1"}) {
		t.Errorf("interfaces %v", l2.Interfaces)
	}
	for node, want := range map[string]bool{"node1": true, "node2": true, "node3": false} {
		if got := selects(t, l2.NodeSelector, map[string]string{"kubernetes.io/hostname": node}); got != want {
			t.Errorf("%s may announce: %v, want %v", node, got, want)
		}
	}
	if len(res.Peers) != 0 || len(res.Secrets) != 0 || res.Has(Dropped) || res.Has(Action) {
		t.Errorf("unexpected peers %v, secrets %v or notes %v", res.Peers, res.Secrets, res.Notes)
	}
}

func addrs(p v1alpha1.IPPool) []string {
	var out []string
	for _, a := range p.Spec.Addresses {
		out = append(out, string(a))
	}
	return out
}

// The BGP example, field by field as a router and a Service see it.
func TestBGPExample(t *testing.T) {
	leaf2Secret := &corev1.Secret{Data: map[string][]byte{"password": []byte("s3cret-leaf2")}}
	res := convert(t, readFiles(t, "bgp.yaml"), Options{Secret: func(ns, name string) (*corev1.Secret, error) {
		if ns == "metallb-system" && name == "leaf2-password" {
			return leaf2Secret, nil
		}
		return nil, errors.New("not found")
	}})

	public := pool(t, res, "public")
	if !public.Spec.AvoidBuggyIPs || public.Spec.AutoAssign != nil {
		t.Errorf("public: avoidBuggyIPs %v autoAssign %v", public.Spec.AvoidBuggyIPs, public.Spec.AutoAssign)
	}
	bgp := public.Spec.Advertise.BGP
	if bgp == nil {
		t.Fatal("public is not advertised by BGP")
	}
	if got := strings.Join(toStrings(bgp.Communities), " "); got != "64512:100 65535:65282" {
		t.Errorf("communities %s (alias no-advertise resolved)", got)
	}
	if got := strings.Join(toStrings(bgp.LargeCommunities), " "); got != "64512:1:2" {
		t.Errorf("large communities %s (alias customer resolved)", got)
	}
	if bgp.LocalPref == nil || *bgp.LocalPref != 150 || bgp.AggregationLength != nil {
		t.Errorf("localPref %v aggregation %v", bgp.LocalPref, bgp.AggregationLength)
	}
	// The peer selector picks exactly the peers MetalLB advertised to.
	for _, p := range res.Peers {
		if !selects(t, bgp.PeerSelector, p.Labels) {
			t.Errorf("public is not advertised to %s", p.Name)
		}
	}
	if selects(t, bgp.PeerSelector, map[string]string{LabelMetalLBPeer: "other"}) {
		t.Error("public would be advertised to a peer MetalLB did not name")
	}

	teamA := pool(t, res, "team-a")
	if teamA.Spec.AutoAssign == nil || *teamA.Spec.AutoAssign {
		t.Error("team-a must stay autoAssign: false")
	}
	if a := teamA.Spec.Advertise.BGP; a == nil || a.AggregationLength == nil || *a.AggregationLength != 28 || a.PeerSelector != nil ||
		!selects(t, a.NodeSelector, map[string]string{"rack": "r1"}) || selects(t, a.NodeSelector, map[string]string{"rack": "r2"}) {
		t.Errorf("team-a bgp %+v", teamA.Spec.Advertise.BGP)
	}

	leaf1, ok := peer(res, "leaf1")
	if !ok {
		t.Fatal("leaf1 not migrated")
	}
	if leaf1.Spec.MyASN != 64600 || leaf1.Spec.PeerASN != 64512 || leaf1.Spec.PeerAddress != "192.0.2.1" ||
		leaf1.Spec.HoldTime.Duration != 9*time.Second || leaf1.Spec.KeepaliveTime.Duration != 3*time.Second || !leaf1.Spec.GracefulRestart ||
		!selects(t, leaf1.Spec.NodeSelector, map[string]string{"rack": "r1"}) || selects(t, leaf1.Spec.NodeSelector, nil) {
		t.Errorf("leaf1 %+v", leaf1.Spec)
	}
	leaf2, _ := peer(res, "leaf2")
	if leaf2.Spec.PeerAddress != "2001:db8::1" || leaf2.Spec.SourceAddress != "2001:db8::11" || leaf2.Spec.PeerPort != 1179 || !leaf2.Spec.EBGPMultiHop || leaf2.Spec.NodeSelector != nil {
		t.Errorf("leaf2 %+v", leaf2.Spec)
	}
	// Passwords: each peer's Secret in ironlb-system holds the password the
	// router expects.
	for name, want := range map[string]string{"leaf1": "s3cret-leaf1", "leaf2": "s3cret-leaf2"} {
		p, _ := peer(res, name)
		if p.Spec.PasswordSecretRef == nil || p.Spec.PasswordSecretRef.Namespace != "" {
			t.Fatalf("%s: passwordSecretRef %+v", name, p.Spec.PasswordSecretRef)
		}
		i := slices.IndexFunc(res.Secrets, func(s corev1.Secret) bool {
			return s.Namespace == "ironlb-system" && s.Name == p.Spec.PasswordSecretRef.Name
		})
		if i < 0 || string(res.Secrets[i].Data["password"]) != want {
			t.Errorf("%s: no Secret ironlb-system/%s with its password", name, p.Spec.PasswordSecretRef.Name)
		}
	}
	if res.Has(Dropped) || res.Has(Action) {
		t.Errorf("everything in bgp.yaml has an equivalent, got %v", res.Notes)
	}

	// From files nobody can read leaf2's Secret: the report asks the user.
	res = convert(t, readFiles(t, "bgp.yaml"), Options{})
	if !hasNote(res, "BGPPeer metallb-system/leaf2", "spec.passwordSecret", Action, "copy Secret metallb-system/leaf2-password") {
		t.Errorf("no action to copy leaf2's Secret: %v", res.Notes)
	}
	if p, _ := peer(res, "leaf2"); p.Spec.PasswordSecretRef == nil || p.Spec.PasswordSecretRef.Name != "leaf2-password" {
		t.Errorf("leaf2 must still refer to its Secret by name: %+v", p.Spec.PasswordSecretRef)
	}
}

func toStrings[S ~string](in []S) []string {
	var out []string
	for _, s := range in {
		out = append(out, string(s))
	}
	return out
}

// The pools' scoping means the same to Services under ironlb's allocator as
// under MetalLB: team-a's Services labelled tier=frontend or tier=edge may ask
// for the reserved pool, others may not; any Service gets a public address.
func TestAllocationScopeBehavesAsInMetalLB(t *testing.T) {
	res := convert(t, readFiles(t, "bgp.yaml"), Options{})
	a := allocator.New()
	for i := range res.Pools {
		if err := a.SetPool(&res.Pools[i]); err != nil {
			t.Fatalf("ironlb refuses migrated pool %s: %v", res.Pools[i].Name, err)
		}
	}
	n := 0
	svc := func(ns string, lbls map[string]string, pool string) (string, error) {
		n++
		s := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "s" + string(rune('a'+n)), UID: types.UID("uid-" + string(rune('a'+n))), Labels: lbls},
			Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, IPFamilies: []corev1.IPFamily{corev1.IPv4Protocol}},
		}
		if pool != "" {
			s.Annotations = map[string]string{"metallb.io/address-pool": pool}
		}
		al, err := a.Allocate(s)
		return al.Pool, err
	}
	for _, tc := range []struct {
		ns     string
		labels map[string]string
		ask    string
		want   string // pool, or "" for refused
	}{
		{"team-a", map[string]string{"tier": "frontend"}, "team-a", "team-a"},
		{"team-a", map[string]string{"tier": "edge"}, "team-a", "team-a"},
		{"team-a", map[string]string{"tier": "backend"}, "team-a", ""},
		{"team-b", map[string]string{"tier": "frontend"}, "team-a", ""},
		{"team-a", map[string]string{"tier": "frontend"}, "", "public"}, // team-a is not auto-assigned
		{"default", nil, "", "public"},
	} {
		got, err := svc(tc.ns, tc.labels, tc.ask)
		if got != tc.want {
			t.Errorf("Service in %s %v asking for %q: pool %q (%v), want %q", tc.ns, tc.labels, tc.ask, got, err, tc.want)
		}
	}
}

// Every MetalLB setting without an equivalent is in the report, and peers
// ironlb cannot open the same way are not written at all.
func TestUnsupportedSettingsAreReported(t *testing.T) {
	res := convert(t, readFiles(t, "unsupported.yaml"), Options{})
	spine, ok := peer(res, "spine")
	if !ok {
		t.Fatal("spine (dynamicASN internal) not migrated")
	}
	if spine.Spec.PeerASN != 64600 || spine.Spec.HoldTime != nil {
		t.Errorf("spine: peerASN %d (want the local 64600), holdTime %v (0s has no equivalent)", spine.Spec.PeerASN, spine.Spec.HoldTime)
	}
	const sp = "BGPPeer metallb-system/spine"
	for _, field := range []string{"spec.routerID", "spec.connectTime", "spec.holdTime", "spec.disableMP"} {
		if !hasNote(res, sp, field, Dropped, "") {
			t.Errorf("no report of %s %s; notes: %v", sp, field, notes(res, sp, Dropped))
		}
	}
	// The BFD profile's timers become the peer's; its echo mode has no equivalent.
	if b := spine.Spec.BFD; b == nil || b.MinTx.Duration != 100*time.Millisecond || b.MinRx.Duration != 100*time.Millisecond || *b.Multiplier != 3 {
		t.Errorf("spine bfd %+v, want 100ms/100ms x3 from BFDProfile fast", spine.Spec.BFD)
	}
	if !hasNote(res, "BFDProfile metallb-system/fast", "spec.echoMode", Dropped, "echo") {
		t.Errorf("echo mode is not reported: %v", res.Notes)
	}
	for name, field := range map[string]string{"unnumbered": "spec.interface", "in-vrf": "spec.vrf", "external": "spec.dynamicASN"} {
		if _, ok := peer(res, name); ok {
			t.Errorf("peer %s was migrated although ironlb cannot open it the same way", name)
		}
		if !hasNote(res, "BGPPeer metallb-system/"+name, field, Dropped, "peer not migrated") {
			t.Errorf("no report why %s is not migrated", name)
		}
	}
	shared := pool(t, res, "shared")
	if al := shared.Spec.Allocation; al == nil || !slices.Equal(al.Namespaces, []string{"team-b"}) || al.NamespaceSelector != nil {
		t.Errorf("shared allocation %+v: namespaces kept, selector left out", shared.Spec.Allocation)
	}
	if !hasNote(res, "IPAddressPool metallb-system/shared", "spec.serviceAllocation.namespaceSelectors", Dropped, "OR") {
		t.Error("the union of namespaces and selectors is not reported")
	}
	// Two advertisements with different attributes: the first by name wins,
	// the other is reported, with its bad community.
	bgp := shared.Spec.Advertise.BGP
	if bgp == nil || bgp.AggregationLength == nil || *bgp.AggregationLength != 26 {
		t.Errorf("shared bgp %+v: want the attributes of shared-aggregate (first by name)", bgp)
	}
	if !hasNote(res, "BGPAdvertisement metallb-system/shared-host-routes", "", Dropped, "announces a pool one way") {
		t.Errorf("the dropped advertisement is not reported: %v", res.Notes)
	}
	if !hasNote(res, "BGPAdvertisement metallb-system/shared-aggregate", "spec.communities[0]", Dropped, "no-such-alias") {
		t.Error("an unknown community alias is not reported")
	}
}

// kubectl's List output reads like separate documents; other kinds are named
// as skipped.
func TestReadList(t *testing.T) {
	var m MetalLB
	b, _ := os.ReadFile("testdata/metallb/list.yaml")
	skipped, err := m.Read(bytes.NewReader(b), "list.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Pools) != 1 || len(m.L2Advertisements) != 1 || !slices.Equal(skipped, []string{"v1 Service default/web"}) {
		t.Fatalf("pools %d, l2 %d, skipped %v", len(m.Pools), len(m.L2Advertisements), skipped)
	}
	res := convert(t, &m, Options{})
	// An L2Advertisement that names no pool announces every pool.
	if p := pool(t, res, "default"); p.Spec.Advertise == nil || p.Spec.Advertise.L2 == nil || p.Spec.Advertise.L2.NodeSelector != nil {
		t.Errorf("default pool advertise %+v", p.Spec.Advertise)
	}
}

func TestReadRefusesUnknownFields(t *testing.T) {
	for name, doc := range map[string]string{
		"unknown spec field": "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p, namespace: m}\nspec: {addresses: [192.0.2.0/24], autoAsign: false}\n",
		"no name":            "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {namespace: m}\nspec: {addresses: [192.0.2.0/24]}\n",
		"no kind":            "apiVersion: metallb.io/v1beta1\nmetadata: {name: p}\n",
		"not yaml":           "{{{",
	} {
		var m MetalLB
		if _, err := m.Read(strings.NewReader(doc), name); err == nil {
			t.Errorf("%s: accepted", name)
		}
		if len(m.Pools) != 0 {
			t.Errorf("%s: a refused object was kept", name)
		}
	}
}

func TestConvertRefusesInconsistentInput(t *testing.T) {
	doc := func(ns, addr string) string {
		return "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p, namespace: " + ns + "}\nspec: {addresses: [\"" + addr + "\"]}\n---\n"
	}
	for name, in := range map[string]string{
		"same name, two namespaces": doc("a", "192.0.2.0/28") + doc("b", "192.0.2.16/28"),
		"inverted range":            doc("a", "192.0.2.20-192.0.2.10"),
		"mixed families":            doc("a", "192.0.2.1-2001:db8::1"),
		"garbage":                   doc("a", "lan"),
	} {
		var m MetalLB
		if _, err := m.Read(strings.NewReader(in), name); err != nil {
			t.Fatal(err)
		}
		if _, err := Convert(&m, Options{}); err == nil {
			t.Errorf("%s: converted", name)
		}
	}
}

func TestAddressRange(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.7/24":              "192.0.2.0/24",
		"192.0.2.0/24":              "192.0.2.0/24",
		" 192.0.2.1 - 192.0.2.9 ":   "192.0.2.1-192.0.2.9",
		"2001:DB8::1-2001:db8::ff":  "2001:db8::1-2001:db8::ff",
		"::ffff:192.0.2.0/120":      "192.0.2.0/24",
		"192.0.2.5-192.0.2.5":       "192.0.2.5-192.0.2.5",
		"2001:db8:1::5/64":          "2001:db8:1::/64",
		"198.51.100.0-198.51.100.9": "198.51.100.0-198.51.100.9",
	} {
		got, _, err := addressRange(in)
		if err != nil || got != want {
			t.Errorf("addressRange(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestUnionSelector(t *testing.T) {
	ml := func(k, v string) metav1.LabelSelector {
		return metav1.LabelSelector{MatchLabels: map[string]string{k: v}}
	}
	in := func(k string, vs ...string) metav1.LabelSelector {
		return metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: k, Operator: metav1.LabelSelectorOpIn, Values: vs}}}
	}
	for _, tc := range []struct {
		name    string
		sels    []metav1.LabelSelector
		ok      bool
		match   []map[string]string
		nomatch []map[string]string
	}{
		{"none", nil, true, []map[string]string{{}}, nil},
		{"empty selects all", []metav1.LabelSelector{ml("a", "1"), {}}, true, []map[string]string{{"b": "2"}}, nil},
		{"one key", []metav1.LabelSelector{ml("zone", "a"), ml("zone", "b"), in("zone", "c")}, true,
			[]map[string]string{{"zone": "a"}, {"zone": "b"}, {"zone": "c"}}, []map[string]string{{"zone": "d"}, {}}},
		{"equal", []metav1.LabelSelector{{MatchLabels: map[string]string{"a": "1", "b": "2"}}, {MatchLabels: map[string]string{"a": "1", "b": "2"}}}, true,
			[]map[string]string{{"a": "1", "b": "2"}}, []map[string]string{{"a": "1"}}},
		{"two keys", []metav1.LabelSelector{ml("a", "1"), ml("b", "2")}, false, nil, nil},
		{"NotIn", []metav1.LabelSelector{ml("a", "1"), {MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "a", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"2"}}}}}, false, nil, nil},
	} {
		sel, ok := unionSelector(tc.sels)
		if ok != tc.ok {
			t.Errorf("%s: ok %v", tc.name, ok)
			continue
		}
		for _, l := range tc.match {
			if !selects(t, sel, l) {
				t.Errorf("%s: %v not matched by %v", tc.name, l, sel)
			}
		}
		for _, l := range tc.nomatch {
			if selects(t, sel, l) {
				t.Errorf("%s: %v matched by %v", tc.name, l, sel)
			}
		}
	}
}

// The YAML output reads back as the objects, without server-owned fields, and
// the report counts what it lists.
func TestOutput(t *testing.T) {
	res := convert(t, readFiles(t, "bgp.yaml", "unsupported.yaml"), Options{})
	var out bytes.Buffer
	if err := res.WriteYAML(&out); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	if strings.Contains(s, "creationTimestamp") || strings.Contains(s, "status:") {
		t.Errorf("output carries server-owned fields:\n%s", s)
	}
	if got := strings.Count(s, "\nkind: IPPool\n") + strings.Count(s, "\nkind: BGPPeer\n") + strings.Count(s, "\nkind: Secret\n"); got != len(res.Pools)+len(res.Peers)+len(res.Secrets) {
		t.Errorf("%d objects written, want %d:\n%s", got, len(res.Pools)+len(res.Peers)+len(res.Secrets), s)
	}
	// Secrets first: a peer never refers to a Secret not yet created.
	if i, j := strings.Index(s, "kind: Secret"), strings.Index(s, "kind: BGPPeer"); i < 0 || j < 0 || i > j {
		t.Errorf("Secrets are not written before BGPPeers")
	}
	var rep bytes.Buffer
	if err := res.WriteReport(&rep); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(rep.String()), "\n")
	if len(lines) != len(res.Notes)+1 || !strings.HasPrefix(lines[len(lines)-1], "migrated 3 IPPool(s), 3 BGPPeer(s), 1 Secret(s)") {
		t.Errorf("report:\n%s", rep.String())
	}
}
