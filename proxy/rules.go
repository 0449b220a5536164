package proxy

import (
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/ironlb/ironlb/proxy/iptables"
)

// Chains every sync keeps (their names are part of the contract with
// operators: iptables-save shows them).
const (
	chainServices         = "IRONLB-SERVICES"          // nat: from PREROUTING and OUTPUT; filter: ClusterIP REJECT/DROP (tree root)
	chainServiceIPs       = "IRONLB-SERVICE-IPS"       // nat: tree root, ClusterIP -> Service chains
	chainNodePorts        = "IRONLB-NODEPORTS"         // nat: per protocol to the port trees; filter: health check ports (tree root)
	chainExternalServices = "IRONLB-EXTERNAL-SERVICES" // filter: REJECT/DROP for external destinations
	chainExternalIPs      = "IRONLB-EXTERNAL-IPS"      // nat: tree root, load balancer IP or externalIP -> Service chains; filter: REJECT/DROP for them
	chainExtNodePorts     = "IRONLB-EXT-NODEPORTS"     // filter: per protocol to the port trees
	chainFirewall         = "IRONLB-FIREWALL"          // filter: loadBalancerSourceRanges DROP (tree root)
	chainForward          = "IRONLB-FORWARD"           // filter: accept what we DNATed
	chainPostrouting      = "IRONLB-POSTROUTING"       // nat: masquerade marked packets
	chainMarkMasq         = "IRONLB-MARK-MASQ"         // nat: set the masquerade mark (for others to jump to, as KUBE-MARK-MASQ)
	chainHairpin          = "IRONLB-HAIRPIN"           // nat: tree root, source address -> masquerade an endpoint reaching itself
	chainCanary           = "IRONLB-PROXY-CANARY"      // nat and filter: one rule, gone after a flush

	prefixSVC = "IRONLB-SVC-"
	prefixSVL = "IRONLB-SVL-"
	prefixEXT = "IRONLB-EXT-"
	prefixFW  = "IRONLB-FW-"

	// prefixAffinity names the recent-module lists of ClientIP affinity (not chains).
	prefixAffinity = "IRONLB-AFF-"

	// chainPrefix is what every chain ironlb makes starts with.
	chainPrefix = "IRONLB-"
)

var protocolsSupported = []string{"tcp", "udp", "sctp"}

// treeID names one dispatch tree of a family.
type treeID int

const (
	treeNATIPs treeID = iota
	treeNATExternalIPs
	treeNATNodePorts
	treeNATNodePortsUDP
	treeNATNodePortsSCTP
	treeFilterInternal
	treeFilterExternalIPs
	treeFilterExtNodePorts
	treeFilterExtNodePortsUDP
	treeFilterExtNodePortsSCTP
	treeFilterFirewall
	treeFilterHealth
	treeNATHairpin
	numTrees
)

func protoIndex(proto string) treeID {
	switch proto {
	case "udp":
		return 1
	case "sctp":
		return 2
	}
	return 0
}

// jumpRule is a rule ironlb puts into a built-in chain.
type jumpRule struct {
	table iptables.Table
	chain string
	args  []string
}

// jumpRules are inserted at the top of the built-in chains in this order, so
// the last one ends up first (as kube-proxy orders its own).
func jumpRules() []jumpRule {
	newConn := []string{"-m", "conntrack", "--ctstate", "NEW"}
	j := func(t iptables.Table, from string, pre []string, comment, to string) jumpRule {
		args := append([]string{}, pre...)
		args = append(args, "-m", "comment", "--comment", comment, "-j", to)
		return jumpRule{table: t, chain: from, args: args}
	}
	return []jumpRule{
		j(iptables.TableFilter, "INPUT", newConn, "ironlb externally-visible service portals", chainExternalServices),
		j(iptables.TableFilter, "FORWARD", newConn, "ironlb externally-visible service portals", chainExternalServices),
		j(iptables.TableFilter, "INPUT", nil, "ironlb health check service ports", chainNodePorts),
		j(iptables.TableFilter, "FORWARD", newConn, "ironlb service portals", chainServices),
		j(iptables.TableFilter, "OUTPUT", newConn, "ironlb service portals", chainServices),
		j(iptables.TableFilter, "FORWARD", nil, "ironlb forwarding rules", chainForward),
		j(iptables.TableFilter, "INPUT", newConn, "ironlb load balancer firewall", chainFirewall),
		j(iptables.TableFilter, "OUTPUT", newConn, "ironlb load balancer firewall", chainFirewall),
		j(iptables.TableFilter, "FORWARD", newConn, "ironlb load balancer firewall", chainFirewall),
		j(iptables.TableNAT, "OUTPUT", nil, "ironlb service portals", chainServices),
		j(iptables.TableNAT, "PREROUTING", nil, "ironlb service portals", chainServices),
		j(iptables.TableNAT, "POSTROUTING", nil, "ironlb postrouting rules", chainPostrouting),
	}
}

// generator turns Service ports and endpoints into rules for one family. It is
// pure: the same inputs give the same rules.
type generator struct {
	family        iptables.Family
	masqMark      string // e.g. "0x4000"
	masqueradeAll bool
	clusterCIDR   netip.Prefix // pod traffic detection; invalid: none
	nodePortCIDRs []netip.Prefix
	nodeIPs       []netip.Addr
	randomFully   bool
	tcpLiberal    bool
	nodeName      string
	zone          string
	probs         []string
}

func (g *generator) probability(n int) string {
	for len(g.probs) <= n {
		g.probs = append(g.probs, fmt.Sprintf("%0.10f", 1.0/float64(max(len(g.probs), 1))))
	}
	return g.probs[n]
}

func hashName(prefix string, parts ...string) string {
	h := sha256.Sum256([]byte(strings.Join(parts, "")))
	return prefix + base32.StdEncoding.EncodeToString(h[:])[:16]
}

// serviceChainName names a chain of a Service port. IPv4 names spell the
// ClusterIP, port and protocol in hex (IRONLB-SVC-C613000A0050T... is
// 198.19.0.10:80/TCP), then 4 characters of a hash of the Service's name
// (two Services may briefly hold the same ClusterIP while one is deleted and
// the other created). Name order is then address order: the chains are
// written in that order (see appendTable), which is the order the kernel
// walks them through the dispatch tree when it validates the table, and it
// walks memory it allocated in order about twice as fast (measured). An
// IPv6 address does not fit in a chain name: IPv6 chains are named by a hash.
func serviceChainName(prefix string, sp *servicePort, hashIn string) string {
	if !sp.clusterIP.Is4() {
		return hashName(prefix, hashIn)
	}
	a := sp.clusterIP.As4()
	proto := byte('T')
	switch sp.protocol {
	case "udp":
		proto = 'U'
	case "sctp":
		proto = 'S'
	}
	h := sha256.Sum256([]byte(hashIn))
	return fmt.Sprintf("%s%02X%02X%02X%02X%04X%c%s", prefix, a[0], a[1], a[2], a[3], sp.port, proto,
		base32.StdEncoding.EncodeToString(h[:])[:4])
}

// clusterIPChainName names a chain of the IPv4 ClusterIP dispatch tree:
// IRONLB-SVC-<prefix in hex>.<bits>, e.g. IRONLB-SVC-C6130000.16 for
// 198.19.0.0/16. The name sorts right before the Service chains of the
// addresses under it (serviceChainName), after those of lower addresses,
// and after its own parent's: in name order a subtree's chains and the
// Service chains they jump to are adjacent, which is what makes writing them
// cheap for iptables-nft-restore (see appendTable).
func clusterIPChainName(k dkey, bits int) string {
	return fmt.Sprintf("%s%08X.%02d", prefixSVC, uint32(k.hi>>32), bits)
}

// chainRules is one chain of a Service port with its rules ("-A NAME ...\n" lines).
type chainRules struct {
	name   string
	rules  []byte
	nrules int
}

// dispatchEntry is a rule a Service port puts into a dispatch tree at key.
type dispatchEntry struct {
	tree treeID
	key  dkey
	args string
}

// spRules is everything one Service port contributes.
type spRules struct {
	chains  []chainRules // nat table
	entries []dispatchEntry
	// localReady is the number of ready local endpoints (health check answer).
	localReady int
	// hairpin lists the addresses of the endpoints the rules DNAT to, sorted
	// and without repeats: each needs the hairpin masquerade rule.
	hairpin []netip.Addr
}

type ruleWriter struct {
	chain  string
	b      strings.Builder
	nrules int
}

func (w *ruleWriter) add(args ...string) {
	w.b.WriteString("-A ")
	w.b.WriteString(w.chain)
	for _, a := range args {
		if a == "" {
			continue
		}
		w.b.WriteByte(' ')
		w.b.WriteString(a)
	}
	w.b.WriteByte('\n')
	w.nrules++
}

func (w *ruleWriter) done() chainRules {
	return chainRules{name: w.chain, rules: []byte(w.b.String()), nrules: w.nrules}
}

func hostPrefix(a netip.Addr) string { return netip.PrefixFrom(a, a.BitLen()).String() }

func quoteComment(s string) string { return `"` + s + `"` }

// servicePortRules generates the rules of one Service port with its endpoints.
// It follows kube-proxy's iptables mode rule for rule, except that the
// dispatch rules go into trees instead of one long chain.
func (g *generator) servicePortRules(sp *servicePort, eps []endpoint) spRules {
	var out spRules
	proto := sp.protocol
	nameStr := sp.name.String()
	hashIn := nameStr + proto
	c := categorize(sp, eps, g.nodeName, g.zone)
	for _, e := range c.local {
		if e.ready {
			out.localReady++
		}
	}

	clusterChain := serviceChainName(prefixSVC, sp, hashIn)
	localChain := serviceChainName(prefixSVL, sp, hashIn)
	extChain := serviceChainName(prefixEXT, sp, hashIn)
	fwChain := serviceChainName(prefixFW, sp, hashIn)
	// ClientIP affinity remembers clients in one recent-module list per
	// endpoint of the Service port.
	affinityList := func(e endpoint) string { return hashName(prefixAffinity, hashIn, e.addr.String()) }

	usesCluster := len(c.cluster) > 0 && sp.usesClusterEndpoints()
	usesLocal := len(c.local) > 0 && sp.usesLocalEndpoints()

	internalChain, hasInternal := clusterChain, c.hasAny
	if sp.internalLocal {
		internalChain = localChain
		hasInternal = hasInternal && len(c.local) > 0
	}
	externalPolicyChain, hasExternal := clusterChain, c.hasAny
	if sp.externalLocal {
		externalPolicyChain = localChain
		hasExternal = hasExternal && len(c.local) > 0
	}
	usesExt := c.hasAny && sp.externallyAccessible()
	usesFW := c.hasAny && len(sp.lbIPs) > 0 && len(sp.sourceRanges) > 0

	var internalFilter, externalFilter, filterComment string
	switch {
	case !c.hasAny:
		internalFilter, externalFilter = "REJECT", "REJECT"
		filterComment = quoteComment(nameStr + " has no endpoints")
	default:
		if !hasInternal {
			internalFilter = "DROP"
		}
		if !hasExternal {
			externalFilter = "DROP"
		}
		filterComment = quoteComment(nameStr + " has no local endpoints")
	}

	// Masquerade marks are set with a MARK target, not a jump to
	// IRONLB-MARK-MASQ: every jump is an edge the kernel walks when it
	// validates the table.
	markMasq := "-j MARK --or-mark " + g.masqMark
	// External traffic under Cluster policy is marked for masquerade and
	// sent to the Service chain by the dispatch rule itself; an
	// IRONLB-EXT- chain exists only where there is more to decide (Local
	// policy, or a firewall chain that continues to it).
	needExt := usesExt && (sp.externalLocal || usesFW)
	extTargets := []string{"-j " + extChain}
	if !needExt {
		extTargets = []string{markMasq, "-j " + clusterChain}
	}
	lbTargets := extTargets
	if usesFW {
		lbTargets = []string{"-j " + fwChain}
	}

	port := strconv.Itoa(int(sp.port))
	portArgs := "-p " + proto + " -m comment --comment %s -m " + proto + " --dport "
	lines := func(match string, targets []string) string {
		var b strings.Builder
		for i, t := range targets {
			if i > 0 {
				b.WriteByte('\n')
			}
			b.WriteString(match)
			b.WriteByte(' ')
			b.WriteString(t)
		}
		return b.String()
	}
	addrEntry := func(tree treeID, a netip.Addr, comment, dport string, targets ...string) {
		out.entries = append(out.entries, dispatchEntry{tree: tree, key: addrKey(a),
			args: lines("-d "+hostPrefix(a)+" "+fmt.Sprintf(portArgs, comment)+dport, targets)})
	}
	portEntry := func(tree treeID, p uint16, comment string, targets ...string) {
		out.entries = append(out.entries, dispatchEntry{tree: tree, key: portDKey(p),
			args: lines(fmt.Sprintf(portArgs, comment)+strconv.Itoa(int(p)), targets)})
	}

	// Dispatch: ClusterIP.
	if hasInternal {
		addrEntry(treeNATIPs, sp.clusterIP, quoteComment(nameStr+" cluster IP"), port, "-j "+internalChain)
	} else {
		addrEntry(treeFilterInternal, sp.clusterIP, filterComment, port, "-j "+internalFilter)
	}
	// externalIPs.
	for _, a := range sp.externalIPs {
		if c.hasAny {
			addrEntry(treeNATExternalIPs, a, quoteComment(nameStr+" external IP"), port, extTargets...)
		}
		if !hasExternal {
			addrEntry(treeFilterExternalIPs, a, filterComment, port, "-j "+externalFilter)
		}
	}
	// Load balancer IPs.
	for _, a := range sp.lbIPs {
		if c.hasAny {
			addrEntry(treeNATExternalIPs, a, quoteComment(nameStr+" loadbalancer IP"), port, lbTargets...)
		}
		if usesFW {
			addrEntry(treeFilterFirewall, a, quoteComment(nameStr+" traffic not accepted by "+fwChain), port, "-j DROP")
		}
		if !hasExternal {
			addrEntry(treeFilterExternalIPs, a, filterComment, port, "-j "+externalFilter)
		}
	}
	// NodePort.
	if sp.nodePort != 0 {
		if c.hasAny {
			portEntry(treeNATNodePorts+protoIndex(proto), sp.nodePort, quoteComment(nameStr), extTargets...)
		}
		if !hasExternal {
			portEntry(treeFilterExtNodePorts+protoIndex(proto), sp.nodePort, filterComment, "-j "+externalFilter)
		}
	}
	if sp.healthCheckNodePort != 0 {
		out.entries = append(out.entries, dispatchEntry{tree: treeFilterHealth, key: portDKey(sp.healthCheckNodePort),
			args: "-p tcp -m comment --comment " + quoteComment(nameStr+" health check node port") +
				" -m tcp --dport " + strconv.Itoa(int(sp.healthCheckNodePort)) + " -j ACCEPT"})
	}

	// The internal policy chain starts with the masquerade rule for traffic
	// that does not come from a local pod.
	var clusterW, localW *ruleWriter
	if usesCluster {
		clusterW = &ruleWriter{chain: clusterChain}
	}
	if usesLocal {
		localW = &ruleWriter{chain: localChain}
	}
	if hasInternal {
		w := clusterW
		if sp.internalLocal {
			w = localW
		}
		match := "-d " + hostPrefix(sp.clusterIP) + " -p " + proto + " -m " + proto + " --dport " + port
		switch {
		case g.masqueradeAll:
			w.add(match, markMasq)
		case g.clusterCIDR.IsValid():
			w.add("! -s", g.clusterCIDR.String(), match, markMasq)
		}
	}

	if needExt {
		w := &ruleWriter{chain: extChain}
		if !sp.externalLocal {
			w.add("-m comment --comment", quoteComment("masquerade traffic for "+nameStr+" external destinations"), markMasq)
		} else {
			if g.clusterCIDR.IsValid() {
				w.add("-s", g.clusterCIDR.String(), "-m comment --comment", quoteComment("pod traffic for "+nameStr+" external destinations"), "-j", clusterChain)
			}
			w.add("-m comment --comment", quoteComment("masquerade LOCAL traffic for "+nameStr+" external destinations"), "-m addrtype --src-type LOCAL", markMasq)
			w.add("-m comment --comment", quoteComment("route LOCAL traffic for "+nameStr+" external destinations"), "-m addrtype --src-type LOCAL -j", clusterChain)
		}
		if hasExternal {
			w.add("-j", externalPolicyChain)
		}
		out.chains = append(out.chains, w.done())
	}

	if usesFW {
		w := &ruleWriter{chain: fwChain}
		comment := "-m comment --comment " + quoteComment(nameStr+" loadbalancer IP")
		allowFromNode := false
		for _, r := range sp.sourceRanges {
			w.add("-s", r.String(), comment, "-j", extChain)
			for _, n := range g.nodeIPs {
				allowFromNode = allowFromNode || r.Contains(n)
			}
		}
		if allowFromNode {
			// A VIP configured on the node is reached from the node with the
			// VIP as source address.
			for _, a := range sp.lbIPs {
				w.add("-s", hostPrefix(a), comment, "-j", extChain)
			}
		}
		out.chains = append(out.chains, w.done())
	}

	if clusterW != nil {
		g.balance(clusterW, sp, c.cluster, affinityList)
		out.chains = append(out.chains, clusterW.done())
	}
	if localW != nil {
		g.balance(localW, sp, c.local, affinityList)
		out.chains = append(out.chains, localW.done())
	}
	// Hairpin (an endpoint reaching itself through the Service) is
	// masqueraded in IRONLB-POSTROUTING by one rule per endpoint address,
	// shared by every Service that has it. Only endpoints whose own new
	// connections can be DNATed here without a masquerade mark need one:
	// those on this node (or of no known node); an endpoint on another node
	// reaches this node's rules only through a NodePort, load balancer IP or
	// externalIP, which mark for masquerade, except under Local policy,
	// where pod traffic (the cluster CIDR) goes to every endpoint unmarked.
	podShortCircuit := sp.externalLocal && usesExt && g.clusterCIDR.IsValid()
	for _, e := range c.reachable {
		if e.remote && !podShortCircuit {
			continue
		}
		a := e.addr.Addr()
		if n := len(out.hairpin); n == 0 || out.hairpin[n-1] != a {
			out.hairpin = append(out.hairpin, a)
		}
	}
	return out
}

// balance writes the endpoint choice of one policy chain: with ClientIP
// affinity first one rule per endpoint that catches a client seen within the
// timeout, then one rule per endpoint that picks it at random with
// probability 1/(n-i) (the last one unconditionally). Each rule DNATs itself:
// there are no per-endpoint chains (see the package doc for why).
//
// The affinity rules use --update, not --rcheck: kube-proxy's endpoint chain
// records the client again (--set) on every new connection, also one that
// came through the affinity check, so the timeout counts from the client's
// last new connection. --update is that check and that record in one match.
func (g *generator) balance(w *ruleWriter, sp *servicePort, eps []endpoint, list func(endpoint) string) {
	proto := "-p " + sp.protocol
	if sp.affinitySeconds > 0 {
		secs := strconv.Itoa(sp.affinitySeconds)
		for _, e := range eps {
			w.add(proto, "-m recent --update --seconds", secs, "--reap --name", list(e), "--rsource -j DNAT --to-destination", e.addr.String())
		}
	}
	for i, e := range eps {
		random, record := "", ""
		if i < len(eps)-1 {
			random = "-m statistic --mode random --probability " + g.probability(len(eps)-i)
		}
		if sp.affinitySeconds > 0 {
			record = "-m recent --set --name " + list(e) + " --rsource"
		}
		w.add(proto, random, record, "-j DNAT --to-destination", e.addr.String())
	}
}

// staticChains writes the chains whose rules depend only on configuration:
// those that may be written in the first of several batches go to first,
// those that jump to dispatch trees to nat. The tree roots are written by the
// trees.
func (g *generator) staticChains(first, nat, filter *tableBuf) {
	write := func(b *tableBuf, name string, lines ...string) {
		w := &ruleWriter{chain: name}
		for _, l := range lines {
			w.add(l)
		}
		r := w.done()
		b.chain(name, r.rules, r.nrules, 0, false)
	}
	loopback := "127.0.0.0/8"
	if g.family == iptables.IPv6 {
		loopback = "::1/128"
	}
	svc := []string{"-j " + chainServiceIPs, "-j " + chainExternalIPs}
	if len(g.nodePortCIDRs) == 0 {
		svc = append(svc, "-m comment --comment \"ironlb service nodeports; NOTE: this must be the last rule in this chain\" -m addrtype --dst-type LOCAL ! -d "+loopback+" -j "+chainNodePorts)
	}
	for _, p := range g.nodePortCIDRs {
		svc = append(svc, "-d "+p.String()+" -m comment --comment \"ironlb service nodeports; NOTE: this must be the last rule in this chain\" -m addrtype --dst-type LOCAL -j "+chainNodePorts)
	}
	write(nat, chainServices, svc...)
	var np, extnp []string
	for _, p := range protocolsSupported {
		np = append(np, "-p "+p+" -j "+natNodePortRoot(p))
		extnp = append(extnp, "-p "+p+" -j "+filterNodePortRoot(p))
	}
	write(nat, chainNodePorts, np...)
	masq := "-j MASQUERADE"
	if g.randomFully {
		masq += " --random-fully"
	}
	mark := g.masqMark + "/" + g.masqMark
	// The new connections this node DNATed and did not mark look for a
	// hairpin (source = the endpoint chosen) in the IRONLB-HAIRPIN tree; the
	// goto returns to POSTROUTING. Marked ones are masqueraded, and the mark
	// is cleared first, as kube-proxy does.
	write(nat, chainPostrouting,
		"-m mark ! --mark "+mark+" -m conntrack --ctstate DNAT -g "+chainHairpin,
		"-m mark ! --mark "+mark+" -j RETURN",
		"-j MARK --xor-mark "+g.masqMark,
		"-m comment --comment \"ironlb service traffic requiring SNAT\" "+masq)
	write(first, chainMarkMasq, "-j MARK --or-mark "+g.masqMark)
	write(first, chainCanary, "-j RETURN")

	write(filter, chainExternalServices, "-j "+chainExternalIPs, "-m addrtype --dst-type LOCAL -j "+chainExtNodePorts)
	write(filter, chainExtNodePorts, extnp...)
	var fwd []string
	if !g.tcpLiberal {
		fwd = append(fwd, "-m conntrack --ctstate INVALID -j DROP")
	}
	fwd = append(fwd,
		"-m comment --comment \"ironlb forwarding rules\" -m mark --mark "+mark+" -j ACCEPT",
		"-m comment --comment \"ironlb forwarding conntrack rule\" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")
	write(filter, chainForward, fwd...)
	write(filter, chainCanary, "-j RETURN")
}

// hairpinRule is the IRONLB-HAIRPIN rule of one endpoint address: a new
// connection from it that was DNATed back to it is masqueraded, so the
// endpoint's answer comes back through the node.
func (g *generator) hairpinRule(a netip.Addr) string {
	h := hostPrefix(a)
	r := "-s " + h + " -d " + h + " -j MASQUERADE"
	if g.randomFully {
		r += " --random-fully"
	}
	return r
}

func natNodePortRoot(proto string) string    { return chainNodePorts + "-" + strings.ToUpper(proto) }
func filterNodePortRoot(proto string) string { return chainExtNodePorts + "-" + strings.ToUpper(proto) }
