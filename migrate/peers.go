package migrate

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ironlb/ironlb/api/v1alpha1"
)

// peers translates every MetalLB BGPPeer. A peer ironlb cannot open the same
// way (unnumbered, in a VRF, with an unknown peer ASN) is not written, and the
// report says why.
func (c *converter) peers() error {
	peers := slices.Clone(c.m.Peers)
	slices.SortFunc(peers, func(a, b BGPPeer) int { return strings.Compare(a.Name, b.Name) })
	seen := map[string]string{}
	for _, p := range peers {
		id := objectID("BGPPeer", p.ObjectMeta)
		if other, dup := seen[p.Name]; dup {
			return fmt.Errorf("%s and %s: ironlb's BGPPeers are cluster-scoped, two peers cannot share the name %q", other, id, p.Name)
		}
		seen[p.Name] = id
		if out, ok := c.peer(id, p); ok {
			c.res.Peers = append(c.res.Peers, out)
		}
	}
	return nil
}

func (c *converter) peer(id string, p BGPPeer) (v1alpha1.BGPPeer, bool) {
	s := p.Spec
	out := v1alpha1.BGPPeer{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.SchemeGroupVersion.String(), Kind: "BGPPeer"},
		ObjectMeta: migratedMeta(id, p.ObjectMeta),
	}
	if out.Labels == nil {
		out.Labels = map[string]string{}
	}
	out.Labels[LabelMetalLBPeer] = p.Name
	skip := func(field, format string, args ...any) (v1alpha1.BGPPeer, bool) {
		c.note(id, field, Dropped, "peer not migrated: "+format, args...)
		return v1alpha1.BGPPeer{}, false
	}

	if s.MyASN == 0 {
		return skip("spec.myASN", "no local ASN")
	}
	out.Spec.MyASN = int64(s.MyASN)
	switch {
	case s.DynamicASN == "internal":
		out.Spec.PeerASN = int64(s.MyASN)
		c.note(id, "spec.dynamicASN", Changed, "internal: peerASN written as the local ASN %d (iBGP)", s.MyASN)
	case s.DynamicASN != "":
		return skip("spec.dynamicASN", "%q: ironlb needs the peer's ASN; set spec.peerASN and run the migration again", s.DynamicASN)
	case s.PeerASN == 0:
		return skip("spec.peerASN", "no peer ASN")
	default:
		out.Spec.PeerASN = int64(s.PeerASN)
	}
	if s.Interface != "" {
		return skip("spec.interface", "unnumbered BGP over interface %q has no ironlb equivalent (a BGPPeer needs the router's address)", s.Interface)
	}
	if s.VRFName != "" {
		return skip("spec.vrf", "ironlb's speakers peer from the default VRF, not from VRF %q", s.VRFName)
	}
	addr, err := netip.ParseAddr(s.PeerAddress)
	if err != nil {
		return skip("spec.peerAddress", "%q is not an IP address", s.PeerAddress)
	}
	out.Spec.PeerAddress = addr.Unmap().String()
	if s.SourceAddress != "" {
		src, err := netip.ParseAddr(s.SourceAddress)
		if err != nil || src.Unmap().Is4() != addr.Unmap().Is4() {
			return skip("spec.sourceAddress", "%q is not an address of the peer address's family", s.SourceAddress)
		}
		out.Spec.SourceAddress = src.Unmap().String()
	}
	if s.PeerPort != 0 && s.PeerPort != 179 {
		out.Spec.PeerPort = int32(s.PeerPort)
	}
	out.Spec.HoldTime = c.seconds(id, "spec.holdTime", s.HoldTime, 3*time.Second,
		"a hold time of 0 (no keepalives) is not offered by ironlb; the default 90s applies")
	out.Spec.KeepaliveTime = c.seconds(id, "spec.keepaliveTime", s.KeepaliveTime, time.Second,
		"below 1s; the default (a third of the hold time) applies")
	if s.ConnectTime != nil {
		c.note(id, "spec.connectTime", Dropped, "%v: ironlb's speakers retry connections at GoBGP's fixed interval", s.ConnectTime.Duration)
	}
	if s.RouterID != "" {
		c.note(id, "spec.routerID", Dropped, "%s: ironlb's speakers use their node's IPv4 address as router ID", s.RouterID)
	}
	if len(s.NodeSelectors) > 0 {
		out.Spec.NodeSelector = c.nodeUnion(id, s.NodeSelectors, "spec.nodeSelectors", "open this session", []string{id})
	}
	out.Spec.EBGPMultiHop = s.EBGPMultiHop
	out.Spec.GracefulRestart = s.EnableGracefulRestart
	if s.DisableMP {
		c.note(id, "spec.disableMP", Dropped, "ignored: the speaker chooses the address families a session carries")
	}
	if s.DualStackAddressFamily {
		c.note(id, "spec.dualStackAddressFamily", Dropped, "ignored: the speaker chooses the address families a session carries")
	}
	c.password(id, p, &out)
	if s.BFDProfile != "" {
		c.bfd(id, p.Namespace, s.BFDProfile, &out)
	}
	return out, true
}

// seconds copies a duration as ironlb takes it: whole seconds, at least min.
func (c *converter) seconds(id, field string, d *metav1.Duration, min time.Duration, tooLow string) *metav1.Duration {
	if d == nil {
		return nil
	}
	if d.Duration < min {
		c.note(id, field, Dropped, "%v: %s", d.Duration, tooLow)
		return nil
	}
	whole := d.Duration.Truncate(time.Second)
	if whole != d.Duration {
		c.note(id, field, Changed, "%v written as %v (whole seconds, as BGP carries it)", d.Duration, whole)
	}
	return &metav1.Duration{Duration: whole}
}

// password moves the session password into a Secret of the speakers'
// namespace: a plain-text spec.password, or a copy of spec.passwordSecret.
func (c *converter) password(id string, p BGPPeer, out *v1alpha1.BGPPeer) {
	s := p.Spec
	ns := c.opts.Namespace
	switch {
	case s.PasswordSecret != nil && s.PasswordSecret.Name != "":
		if s.Password != "" {
			c.note(id, "spec.password", Dropped, "ignored: spec.passwordSecret is set too and wins")
		}
		srcNS := s.PasswordSecret.Namespace
		if srcNS == "" {
			srcNS = p.Namespace
		}
		name := s.PasswordSecret.Name
		out.Spec.PasswordSecretRef = &v1alpha1.SecretReference{Name: name}
		if srcNS == ns {
			return
		}
		if c.opts.Secret == nil {
			c.note(id, "spec.passwordSecret", Action, "copy Secret %s/%s (its key \"password\") to namespace %s before the speakers start: speakers read Secrets only there", srcNS, name, ns)
			return
		}
		sec, err := c.opts.Secret(srcNS, name)
		if err != nil || sec == nil || len(sec.Data["password"]) == 0 {
			if err == nil {
				err = fmt.Errorf("no key \"password\"")
			}
			c.note(id, "spec.passwordSecret", Action, "could not read Secret %s/%s (%v): create Secret %s/%s with key \"password\" before the speakers start", srcNS, name, err, ns, name)
			return
		}
		c.addSecret(ns, name, id, sec.Data["password"])
		c.note(id, "spec.passwordSecret", Changed, "Secret %s/%s copied to %s/%s (speakers read Secrets only in %s)", srcNS, name, ns, name, ns)
	case s.Password != "":
		name := p.Name + "-bgp-password"
		c.addSecret(ns, name, id, []byte(s.Password))
		out.Spec.PasswordSecretRef = &v1alpha1.SecretReference{Name: name}
		c.note(id, "spec.password", Changed, "the plain-text password is now in Secret %s/%s (ironlb takes passwords only from Secrets)", ns, name)
	}
}

func (c *converter) addSecret(ns, name, from string, password []byte) {
	c.res.Secrets = append(c.res.Secrets, corev1.Secret{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: ns,
			Annotations: map[string]string{AnnotationMigratedFrom: "metallb.io " + from},
		},
		Type: corev1.SecretTypeBasicAuth,
		Data: map[string][]byte{"password": slices.Clone(password)},
	})
}

// bfd translates the BFD profile a peer names into the peer's bfd timers.
// ironlb's BFD is single-hop: a multi-hop peer keeps no BFD.
func (c *converter) bfd(id, ns, profile string, out *v1alpha1.BGPPeer) {
	i := slices.IndexFunc(c.m.BFDProfiles, func(b BFDProfile) bool { return b.Name == profile && b.Namespace == ns })
	if i < 0 {
		c.note(id, "spec.bfdProfile", Dropped, "names BFDProfile %q, which is not among the objects read; no BFD", profile)
		return
	}
	if out.Spec.EBGPMultiHop {
		c.note(id, "spec.bfdProfile", Dropped, "BFDProfile %q on a multi-hop session: ironlb's BFD is single-hop; no BFD", profile)
		return
	}
	p := c.m.BFDProfiles[i].Spec
	pid := objectID("BFDProfile", c.m.BFDProfiles[i].ObjectMeta)
	ms := func(v *uint32) *metav1.Duration {
		if v == nil {
			return nil
		}
		return &metav1.Duration{Duration: time.Duration(*v) * time.Millisecond}
	}
	b := &v1alpha1.BFDSettings{MinTx: ms(p.TransmitInterval), MinRx: ms(p.ReceiveInterval)}
	if p.DetectMultiplier != nil {
		m := int32(*p.DetectMultiplier)
		b.Multiplier = &m
	}
	out.Spec.BFD = b
	c.note(id, "spec.bfdProfile", Changed, "BFDProfile %q written as the peer's bfd timers", profile)
	if p.EchoMode != nil && *p.EchoMode || p.EchoInterval != nil {
		c.note(pid, "spec.echoMode", Dropped, "ironlb's BFD sends no echo packets; the control packets' timers apply")
	}
	if p.PassiveMode != nil && *p.PassiveMode {
		c.note(pid, "spec.passiveMode", Dropped, "ironlb's BFD sessions are active: they send control packets from the start")
	}
	if p.MinimumTTL != nil {
		c.note(pid, "spec.minimumTtl", Dropped, "for multi-hop sessions; ironlb's BFD is single-hop (it checks TTL 255)")
	}
}
