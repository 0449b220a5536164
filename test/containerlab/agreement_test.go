// Package containerlab checks the containerlab topology in this folder: the
// topology, the FRR leaf configurations and the ironlb objects agree on every
// address, ASN and password (agreement_test.go), and the FRR configurations
// load in the FRR the project's lab runs (frr_test.go).
package containerlab

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// topology is the part of a containerlab topology file this test reads.
type topology struct {
	Name     string `json:"name"`
	Topology struct {
		Kinds map[string]struct {
			Image string `json:"image"`
		} `json:"kinds"`
		Nodes map[string]struct {
			Kind          string   `json:"kind"`
			Image         string   `json:"image"`
			Binds         []string `json:"binds"`
			Exec          []string `json:"exec"`
			StartupConfig string   `json:"startup-config"`
		} `json:"nodes"`
		Links []struct {
			Endpoints []string `json:"endpoints"`
		} `json:"links"`
	} `json:"topology"`
}

// endpoint is "node:interface".
type endpoint struct{ node, iface string }

func parseEndpoint(s string) (endpoint, error) {
	n, i, ok := strings.Cut(s, ":")
	if !ok || n == "" || i == "" {
		return endpoint{}, fmt.Errorf("endpoint %q is not node:interface", s)
	}
	return endpoint{n, i}, nil
}

// frrConfig is what a leaf's frr.conf says.
type frrConfig struct {
	hostname   string
	asn        uint32
	routerID   netip.Addr
	interfaces map[string]netip.Prefix // interface -> address with its prefix length
	neighbors  map[netip.Addr]frrNeighbor
}

type frrNeighbor struct {
	remoteAS uint32
	password string
}

// parseFRR reads the commands this topology uses from an integrated FRR
// configuration; neighbors inherit remote-as and password from their
// peer-group.
func parseFRR(r io.Reader) (*frrConfig, error) {
	c := &frrConfig{interfaces: map[string]netip.Prefix{}, neighbors: map[netip.Addr]frrNeighbor{}}
	groups := map[string]frrNeighbor{}
	member := map[netip.Addr]string{}
	own := map[netip.Addr]frrNeighbor{}
	iface := ""
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "!") {
			continue
		}
		bad := func(err error) error { return fmt.Errorf("line %d %q: %w", n, line, err) }
		switch {
		case f[0] == "hostname" && len(f) == 2:
			c.hostname = f[1]
		case f[0] == "interface" && len(f) == 2:
			iface = f[1]
		case f[0] == "exit":
			iface = ""
		case f[0] == "ip" && len(f) == 3 && f[1] == "address" && iface != "":
			p, err := netip.ParsePrefix(f[2])
			if err != nil {
				return nil, bad(err)
			}
			c.interfaces[iface] = p
		case f[0] == "router" && len(f) == 3 && f[1] == "bgp":
			asn, err := strconv.ParseUint(f[2], 10, 32)
			if err != nil {
				return nil, bad(err)
			}
			c.asn = uint32(asn)
		case f[0] == "bgp" && len(f) == 3 && f[1] == "router-id":
			a, err := netip.ParseAddr(f[2])
			if err != nil {
				return nil, bad(err)
			}
			c.routerID = a
		case f[0] == "neighbor" && len(f) >= 3:
			addr, err := netip.ParseAddr(f[1])
			isAddr := err == nil
			set := func(m func(*frrNeighbor)) {
				if isAddr {
					v := own[addr]
					m(&v)
					own[addr] = v
				} else {
					v := groups[f[1]]
					m(&v)
					groups[f[1]] = v
				}
			}
			switch {
			case f[2] == "peer-group" && len(f) == 3 && !isAddr:
				groups[f[1]] = groups[f[1]]
			case f[2] == "peer-group" && len(f) == 4 && isAddr:
				member[addr] = f[3]
				own[addr] = own[addr]
			case f[2] == "remote-as" && len(f) == 4:
				asn, err := strconv.ParseUint(f[3], 10, 32)
				if err != nil {
					return nil, bad(err)
				}
				set(func(v *frrNeighbor) { v.remoteAS = uint32(asn) })
			case f[2] == "password" && len(f) == 4:
				set(func(v *frrNeighbor) { v.password = f[3] })
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	for addr, v := range own {
		if g, ok := member[addr]; ok {
			gv, known := groups[g]
			if !known {
				return nil, fmt.Errorf("neighbor %s: unknown peer-group %s", addr, g)
			}
			if v.remoteAS == 0 {
				v.remoteAS = gv.remoteAS
			}
			if v.password == "" {
				v.password = gv.password
			}
		}
		c.neighbors[addr] = v
	}
	return c, nil
}

// ironlbObjects are the objects of ironlb.yaml this test reads.
type ironlbObjects struct {
	peers   []bgpPeer
	pools   []netip.Prefix
	secrets map[string]string // namespace/name -> password
}

type bgpPeer struct {
	name          string
	peerAddress   netip.Addr
	sourceAddress netip.Addr
	peerASN       uint32
	myASN         uint32
	node          string // nodeSelector kubernetes.io/hostname
	passwordRef   string // Secret name ("" for none)
}

func parseObjects(b []byte) (*ironlbObjects, error) {
	out := &ironlbObjects{secrets: map[string]string{}}
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		var o struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name      string `json:"name"`
				Namespace string `json:"namespace"`
			} `json:"metadata"`
			StringData map[string]string `json:"stringData"`
			Spec       struct {
				Addresses     []string `json:"addresses"`
				PeerAddress   string   `json:"peerAddress"`
				SourceAddress string   `json:"sourceAddress"`
				PeerASN       uint32   `json:"peerASN"`
				MyASN         uint32   `json:"myASN"`
				NodeSelector  struct {
					MatchLabels map[string]string `json:"matchLabels"`
				} `json:"nodeSelector"`
				PasswordSecretRef *struct {
					Name string `json:"name"`
				} `json:"passwordSecretRef"`
			} `json:"spec"`
		}
		if err := yaml.Unmarshal(doc, &o); err != nil {
			return nil, err
		}
		switch o.Kind {
		case "IPPool":
			for _, a := range o.Spec.Addresses {
				p, err := netip.ParsePrefix(a)
				if err != nil {
					return nil, fmt.Errorf("IPPool %s: %w", o.Metadata.Name, err)
				}
				out.pools = append(out.pools, p)
			}
		case "Secret":
			out.secrets[o.Metadata.Namespace+"/"+o.Metadata.Name] = o.StringData["password"]
		case "BGPPeer":
			p := bgpPeer{name: o.Metadata.Name, peerASN: o.Spec.PeerASN, myASN: o.Spec.MyASN, node: o.Spec.NodeSelector.MatchLabels["kubernetes.io/hostname"]}
			if p.peerAddress, err = netip.ParseAddr(o.Spec.PeerAddress); err != nil {
				return nil, fmt.Errorf("BGPPeer %s: %w", p.name, err)
			}
			if p.sourceAddress, err = netip.ParseAddr(o.Spec.SourceAddress); err != nil {
				return nil, fmt.Errorf("BGPPeer %s: %w", p.name, err)
			}
			if o.Spec.PasswordSecretRef != nil {
				p.passwordRef = o.Spec.PasswordSecretRef.Name
			}
			out.peers = append(out.peers, p)
		case "":
		default:
			return nil, fmt.Errorf("unexpected kind %s in ironlb.yaml", o.Kind)
		}
	}
}

// nodeAddresses are the "ip addr add A/L dev IF" commands of a node's exec list.
func nodeAddresses(exec []string) (map[string]netip.Prefix, error) {
	out := map[string]netip.Prefix{}
	for _, e := range exec {
		f := strings.Fields(e)
		if len(f) == 6 && f[0] == "ip" && f[1] == "addr" && f[2] == "add" && f[4] == "dev" {
			p, err := netip.ParsePrefix(f[3])
			if err != nil {
				return nil, fmt.Errorf("%q: %w", e, err)
			}
			out[f[5]] = p
		}
	}
	return out, nil
}

// lab is the parsed folder.
type lab struct {
	topo  topology
	leafs map[string]*frrConfig // by node name
	objs  *ironlbObjects
}

func load(t *testing.T, dir string) *lab {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "ironlb.clab.yml"))
	if err != nil {
		t.Fatal(err)
	}
	l := &lab{leafs: map[string]*frrConfig{}}
	if err := yaml.UnmarshalStrict(b, &l.topo); err != nil {
		t.Fatalf("ironlb.clab.yml: %v", err)
	}
	for name, n := range l.topo.Topology.Nodes {
		for _, bind := range n.Binds {
			src, dst, _ := strings.Cut(bind, ":")
			if _, err := os.Stat(filepath.Join(dir, src)); err != nil {
				t.Errorf("node %s binds %s, which does not exist: %v", name, src, err)
			}
			if dst != "/etc/frr/frr.conf" {
				continue
			}
			f, err := os.Open(filepath.Join(dir, src))
			if err != nil {
				t.Fatal(err)
			}
			c, err := parseFRR(f)
			f.Close()
			if err != nil {
				t.Fatalf("%s: %v", src, err)
			}
			l.leafs[name] = c
		}
	}
	if b, err = os.ReadFile(filepath.Join(dir, "ironlb.yaml")); err != nil {
		t.Fatal(err)
	}
	if l.objs, err = parseObjects(b); err != nil {
		t.Fatalf("ironlb.yaml: %v", err)
	}
	return l
}

// The topology, the leaves' FRR configurations and ironlb's objects agree: every
// node-leaf link is one /31 with the leaf's address in FRR and the node's in its
// exec list; FRR has the node as neighbor with the nodes' ASN; ironlb has
// exactly one BGPPeer per link, from the node's address to the leaf's, with the
// leaf's ASN, the nodes' ASN and the leaf's password; the pool's VIPs are on no
// link.
func TestTopologyAgrees(t *testing.T) {
	l := load(t, ".")
	for _, p := range checkAgreement(l) {
		t.Error(p)
	}
	if len(l.leafs) != 2 {
		t.Errorf("leaves with an FRR configuration: %d, want 2", len(l.leafs))
	}
}

// checkAgreement lists every disagreement.
func checkAgreement(l *lab) (problems []string) {
	errorf := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	nodes := l.topo.Topology.Nodes
	// The kind nodes, as kind names them.
	kindNodes, err := kindNodeNames(l)
	if err != nil {
		return []string{err.Error()}
	}
	for _, n := range kindNodes {
		if nodes[n].Kind != "ext-container" {
			errorf("kind node %s is not an ext-container of the topology", n)
		}
	}
	peersSeen := map[string]bool{}
	links := 0
	for _, link := range l.topo.Topology.Links {
		if len(link.Endpoints) != 2 {
			errorf("link %v: want two endpoints", link.Endpoints)
			continue
		}
		a, err1 := parseEndpoint(link.Endpoints[0])
		b, err2 := parseEndpoint(link.Endpoints[1])
		if err := errors.Join(err1, err2); err != nil {
			errorf("%v", err)
			continue
		}
		for _, e := range []endpoint{a, b} {
			if _, ok := nodes[e.node]; !ok {
				errorf("link %v names node %s, which is not in the topology", link.Endpoints, e.node)
			}
		}
		leaf, ok := l.leafs[a.node]
		if !ok {
			errorf("link %v does not start at a leaf", link.Endpoints)
			continue
		}
		leafAddr, ok := leaf.interfaces[a.iface]
		if !ok {
			errorf("%s has no address on %s in its FRR configuration", a.node, a.iface)
			continue
		}
		far, err := nodeAddresses(nodes[b.node].Exec)
		if err != nil {
			errorf("%v", err)
			continue
		}
		farAddr, ok := far[b.iface]
		if !ok {
			errorf("%s gets no address on %s (exec: ip addr add ... dev %s)", b.node, b.iface, b.iface)
			continue
		}
		if leafAddr.Bits() != 31 || farAddr.Bits() != 31 || leafAddr.Masked() != farAddr.Masked() || leafAddr.Addr() == farAddr.Addr() {
			errorf("link %v: %s and %s are not the two ends of one /31", link.Endpoints, leafAddr, farAddr)
			continue
		}
		if !slices.Contains(kindNodes, b.node) {
			continue // the client
		}
		links++
		nb, ok := leaf.neighbors[farAddr.Addr()]
		if !ok {
			errorf("%s has no BGP neighbor %s (%s)", a.node, farAddr.Addr(), b.node)
			continue
		}
		var match []bgpPeer
		for _, p := range l.objs.peers {
			if p.peerAddress == leafAddr.Addr() && p.node == b.node {
				match = append(match, p)
			}
		}
		if len(match) != 1 {
			errorf("link %s-%s: %d BGPPeers from node %s to %s, want 1", a.node, b.node, len(match), b.node, leafAddr.Addr())
			continue
		}
		p := match[0]
		peersSeen[p.name] = true
		if p.sourceAddress != farAddr.Addr() {
			errorf("BGPPeer %s: sourceAddress %s, the node's end of the link is %s", p.name, p.sourceAddress, farAddr.Addr())
		}
		if p.peerASN != leaf.asn {
			errorf("BGPPeer %s: peerASN %d, %s is AS %d", p.name, p.peerASN, a.node, leaf.asn)
		}
		if p.myASN != nb.remoteAS {
			errorf("BGPPeer %s: myASN %d, %s expects AS %d from %s", p.name, p.myASN, a.node, nb.remoteAS, farAddr.Addr())
		}
		secret := ""
		if p.passwordRef != "" {
			var ok bool
			if secret, ok = l.objs.secrets["ironlb-system/"+p.passwordRef]; !ok {
				errorf("BGPPeer %s: Secret ironlb-system/%s is not in ironlb.yaml", p.name, p.passwordRef)
			}
		}
		if secret != nb.password {
			errorf("BGPPeer %s: password %q, %s expects %q", p.name, secret, a.node, nb.password)
		}
	}
	if want := len(kindNodes) * len(l.leafs); links != want {
		errorf("%d node-leaf links, want %d (every node to every leaf)", links, want)
	}
	for _, p := range l.objs.peers {
		if !peersSeen[p.name] {
			errorf("BGPPeer %s (%s to %s) matches no link", p.name, p.node, p.peerAddress)
		}
	}
	if len(l.objs.pools) == 0 {
		errorf("ironlb.yaml has no IPPool")
	}
	for _, pool := range l.objs.pools {
		for name, leaf := range l.leafs {
			for iface, a := range leaf.interfaces {
				if pool.Overlaps(a.Masked()) {
					errorf("IPPool %s overlaps %s %s %s", pool, name, iface, a)
				}
			}
		}
	}
	return problems
}

// kindNodeNames are the node names kind gives the cluster of the k8s-kind node:
// <name>-control-plane, <name>-worker, <name>-worker2, ...
func kindNodeNames(l *lab) ([]string, error) {
	var out []string
	for _, n := range l.topo.Topology.Nodes {
		if n.Kind != "k8s-kind" {
			continue
		}
		b, err := os.ReadFile(n.StartupConfig)
		if err != nil {
			return nil, fmt.Errorf("kind config: %w", err)
		}
		var cfg struct {
			Kind       string `json:"kind"`
			APIVersion string `json:"apiVersion"`
			Name       string `json:"name"`
			Nodes      []struct {
				Role string `json:"role"`
			} `json:"nodes"`
		}
		if err := yaml.UnmarshalStrict(b, &cfg); err != nil {
			return nil, fmt.Errorf("kind config: %w", err)
		}
		count := map[string]int{}
		for _, node := range cfg.Nodes {
			count[node.Role]++
			name := cfg.Name + "-" + node.Role
			if c := count[node.Role]; c > 1 {
				name += strconv.Itoa(c)
			}
			out = append(out, name)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("the topology has no k8s-kind cluster")
	}
	return out, nil
}

// The check above fails on each kind of disagreement.
func TestAgreementCheckCanFail(t *testing.T) {
	for name, breakIt := range map[string]func(*lab){
		"wrong peer ASN":   func(l *lab) { l.objs.peers[0].peerASN++ },
		"wrong my ASN":     func(l *lab) { l.objs.peers[1].myASN = 64601 },
		"wrong source":     func(l *lab) { l.objs.peers[2].sourceAddress = netip.MustParseAddr("192.0.2.99") },
		"missing password": func(l *lab) { l.objs.secrets = map[string]string{} },
		"peer for no link": func(l *lab) {
			l.objs.peers = append(l.objs.peers, bgpPeer{name: "extra", peerAddress: netip.MustParseAddr("192.0.2.200")})
		},
		"missing peer":       func(l *lab) { l.objs.peers = l.objs.peers[1:] },
		"FRR neighbor gone":  func(l *lab) { clear(l.leafs["leaf1"].neighbors) },
		"pool on a link":     func(l *lab) { l.objs.pools = append(l.objs.pools, netip.MustParsePrefix("192.0.2.0/24")) },
		"leaf address moved": func(l *lab) { l.leafs["leaf2"].interfaces["eth1"] = netip.MustParsePrefix("192.0.2.100/31") },
		"FRR expects another": func(l *lab) {
			l.leafs["leaf2"].neighbors[netip.MustParseAddr("192.0.2.65")] = frrNeighbor{remoteAS: 64600}
		},
	} {
		t.Run(name, func(t *testing.T) {
			l := load(t, ".")
			breakIt(l)
			if len(checkAgreement(l)) == 0 {
				t.Errorf("the agreement check passes with %s", name)
			}
		})
	}
}
