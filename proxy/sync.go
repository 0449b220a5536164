package proxy

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"hash/maphash"
	"net/netip"
	"slices"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/ironlb/ironlb/proxy/iptables"
)

// serviceSnapshot is a Service and its EndpointSlices as the change tracker
// saw them (svc nil: deleted).
type serviceSnapshot struct {
	name   types.NamespacedName
	svc    *v1.Service
	slices []*discovery.EndpointSlice
}

// chainState is what the syncer remembers of a chain it wrote.
type chainState struct {
	name   string
	hash   uint64
	nrules int
}

// spState is what was last applied for one Service port.
type spState struct {
	sp      servicePort
	eps     []endpoint
	chains  []chainState
	entries []dispatchEntry
	hairpin []netip.Addr
	rules   spRules
}

// syncResult tells the caller what a sync did.
type syncResult struct {
	full         bool
	restoreBytes int
	restores     int
	// restoreTime is the time spent in iptables-restore (at 10,000
	// Services nearly all of it the kernel validating the table).
	restoreTime time.Duration
	natRules    int
	filterRules int
	// staleUDP lists the UDP Service ports whose serving endpoints lost members.
	staleUDP []staleService
}

// maxChainsPerRestore bounds the Service chains one iptables-restore
// declares. A sync that writes more is sent in batches of whole Services
// first and the dispatch chains and deletions last; each batch is atomic and
// leaves a valid rule set (a Service's new chains are reached only once the
// last restore points the dispatch at them, and nothing is deleted before
// then). It is a fallback: with the names and order of appendTable one
// restore of 10,000 Services x 10 endpoints (11,800 chains) took 2.3 s of
// CPU and 20,000 Services (22,700 chains) 6.2 s here; the measured cost
// grows faster than linearly beyond that (iptables-nft-restore 1.8.9).
var maxChainsPerRestore = 30000

// familySyncer keeps the applied state of one family and turns snapshots of
// changed Services into iptables-restore input. It is not safe for
// concurrent use; the Proxier's sync loop owns it.
type familySyncer struct {
	ipt       iptables.Interface
	gen       *generator
	seed      maphash.Seed
	trees     [numTrees]*dispatchTree
	sps       map[servicePortName]*spState
	byService map[types.NamespacedName][]servicePortName
	// hairpin counts, per endpoint address, the Service ports that DNAT to
	// it; the IRONLB-HAIRPIN tree has a rule for each address counted.
	hairpin map[netip.Addr]int
	rules   map[iptables.Table]int
	// owned names, per table, every chain this process may have made and not
	// seen deleted: a full sync deletes those it does not write.
	owned map[iptables.Table]map[string]bool

	// chains counts the Service port chains held now; moved names those of
	// them that partial syncs wrote since the last full sync (see
	// relayoutDue).
	chains int
	moved  map[string]bool

	// batches hold Service chains written before the final restore.
	batches   []*tableBuf
	lastInput []byte // the last restore input of the last sync
	lastBytes int    // all restore input of the last sync
}

func newFamilySyncer(ipt iptables.Interface, gen *generator) *familySyncer {
	s := &familySyncer{ipt: ipt, gen: gen, seed: maphash.MakeSeed(),
		owned: map[iptables.Table]map[string]bool{iptables.TableNAT: {}, iptables.TableFilter: {}}}
	s.reset()
	return s
}

func (s *familySyncer) reset() {
	width := 32
	if s.gen.family == iptables.IPv6 {
		width = 128
	}
	nat, filter := iptables.TableNAT, iptables.TableFilter
	// The letters name the trees' chains. In the nat table they sort in
	// the reverse of the order the trees are written in (see appendTable):
	// ClusterIPs, NodePorts (UDP, TCP, SCTP), external IPs, hairpin. The
	// ClusterIP tree comes first: its leaves and the Service chains they
	// jump to are written in address order.
	s.trees[treeNATIPs] = newDispatchTree(nat, chainServiceIPs, 'g', width, serviceShape, addrMatch(width), s.seed)
	if width == 32 {
		s.trees[treeNATIPs].namer = clusterIPChainName
	}
	s.trees[treeNATExternalIPs] = newDispatchTree(nat, chainExternalIPs, 'c', width, serviceShape, addrMatch(width), s.seed)
	s.trees[treeFilterInternal] = newDispatchTree(filter, chainServices, 'f', width, serviceShape, addrMatch(width), s.seed)
	s.trees[treeFilterExternalIPs] = newDispatchTree(filter, chainExternalIPs, 'g', width, serviceShape, addrMatch(width), s.seed)
	s.trees[treeFilterFirewall] = newDispatchTree(filter, chainFirewall, 'h', width, serviceShape, addrMatch(width), s.seed)
	s.trees[treeFilterHealth] = newDispatchTree(filter, chainNodePorts, 'i', 16, serviceShape, portMatch("tcp"), s.seed)
	s.trees[treeNATHairpin] = newDispatchTree(nat, chainHairpin, 'a', width, hairpinShape, srcMatch(width), s.seed)
	for i, p := range protocolsSupported {
		s.trees[treeNATNodePorts+treeID(i)] = newDispatchTree(nat, natNodePortRoot(p), natNodePortLetters[i], 16, serviceShape, portMatch(p), s.seed)
		s.trees[treeFilterExtNodePorts+treeID(i)] = newDispatchTree(filter, filterNodePortRoot(p), 'j'+byte(i), 16, serviceShape, portMatch(p), s.seed)
	}
	s.sps = map[servicePortName]*spState{}
	s.byService = map[types.NamespacedName][]servicePortName{}
	s.hairpin = map[netip.Addr]int{}
	s.rules = map[iptables.Table]int{}
	s.chains = 0
	s.moved = map[string]bool{}
}

// relayoutMinChains is the fewest moved chains that make relayoutDue true:
// below it the kernel's walk is short anyway.
var relayoutMinChains = 1000

// relayoutDue reports whether at least half of the Service port chains (and
// at least relayoutMinChains) were written by partial syncs since the last
// full sync. The kernel's validation walk on every commit reads the rules in
// the order the dispatch trees reach them; a full sync writes them in that
// order into fresh memory, while a partial sync puts a rewritten chain
// wherever the allocator has room. At 10,000 Services x 10 endpoints a
// one-Service change took 92-104 ms after a full sync and 124-172 ms once
// every Service chain had been rewritten by partial syncs (or had arrived
// after the full sync), and a full sync brought it back
// (BenchmarkRealLabChange10k). A full sync costs about as much CPU as 25 of
// those commits, so one per half of the table rewritten is cheap.
func (s *familySyncer) relayoutDue() bool {
	return len(s.moved) >= relayoutMinChains && 2*len(s.moved) >= s.chains
}

// natNodePortLetters name the nat NodePort trees of protocolsSupported.
var natNodePortLetters = []byte{'e', 'f', 'd'}

func ownerOf(n servicePortName) string { return n.String() + "/" + string(n.Protocol) }

// batch returns the buffer Service chains are written to now.
func (s *familySyncer) batch() *tableBuf {
	b := s.batches[len(s.batches)-1]
	if b.nchains >= maxChainsPerRestore {
		b = newTableBuf(b.full)
		s.batches = append(s.batches, b)
	}
	return b
}

// sync applies the given Service snapshots. A full sync starts from nothing:
// every chain is written, and chains this process made that are no longer
// wanted are deleted. A partial sync writes only the chains whose rules
// changed.
func (s *familySyncer) sync(ctx context.Context, snaps []serviceSnapshot, full bool) (syncResult, error) {
	res := syncResult{full: full}
	if full {
		s.reset()
	}
	s.batches = []*tableBuf{newTableBuf(full)}
	defer func() { s.batches = nil }() // a full sync's batches are megabytes
	nat, filter := newTableBuf(full), newTableBuf(full)
	if full {
		s.gen.staticChains(s.batches[0], nat, filter)
	}
	for _, snap := range snaps {
		s.applyService(snap, full, nat, &res)
	}
	for _, t := range s.trees {
		b := nat
		if t.table == iptables.TableFilter {
			b = filter
		}
		t.render(b, full)
	}
	if full {
		written := map[string]bool{}
		for _, b := range append(s.batches, nat) {
			for n := range b.written {
				written[n] = true
			}
		}
		for n := range s.owned[iptables.TableNAT] {
			if !written[n] {
				nat.remove(n, 0)
			}
		}
		for n := range s.owned[iptables.TableFilter] {
			if !filter.written[n] {
				filter.remove(n, 0)
			}
		}
	}

	// Batches before the last go first, each on its own; a single batch is
	// merged into the final restore, which is then the only one.
	early := s.batches
	if len(early) == 1 {
		early = nil
	}
	own := func(t iptables.Table, bufs ...*tableBuf) {
		for _, b := range bufs {
			for n := range b.written {
				s.owned[t][n] = true
			}
		}
	}
	for _, b := range early {
		var in bytes.Buffer
		appendTable(&in, "nat", b)
		own(iptables.TableNAT, b) // before the attempt: a failed one may have made some
		res.restoreBytes += in.Len()
		res.restores++
		if err := s.restore(ctx, in.Bytes(), &res); err != nil {
			return res, fmt.Errorf("%s restore (full=%v, batch %d of %d): %w", s.gen.family, full, res.restores, len(early)+1, err)
		}
	}
	final := []*tableBuf{nat}
	if early == nil {
		final = []*tableBuf{s.batches[0], nat}
	}
	if full {
		// Missing jump rules go into the final restore: each separate
		// "iptables -I" would be a commit, and every commit makes the kernel
		// re-validate the whole table.
		for _, j := range jumpRules() {
			ok, err := s.ipt.HasRule(ctx, j.table, j.chain, j.args...)
			if err != nil {
				return res, fmt.Errorf("%s check jump rule %s %s: %w", s.gen.family, j.table, j.chain, err)
			}
			if ok {
				continue
			}
			b := nat
			if j.table == iptables.TableFilter {
				b = filter
			}
			b.inserts = append(b.inserts, "-I "+j.chain+" 1 "+joinArgs(j.args))
		}
	}
	var in bytes.Buffer
	appendTable(&in, "filter", filter)
	appendTable(&in, "nat", final...)
	own(iptables.TableNAT, final...)
	own(iptables.TableFilter, filter)
	res.restoreBytes += in.Len()
	s.lastInput = in.Bytes()
	s.lastBytes = res.restoreBytes
	if in.Len() > 0 {
		res.restores++
		if err := s.restore(ctx, in.Bytes(), &res); err != nil {
			return res, fmt.Errorf("%s restore (full=%v): %w", s.gen.family, full, err)
		}
	}
	for _, b := range final {
		for _, n := range b.deletes {
			delete(s.owned[iptables.TableNAT], n)
		}
	}
	for _, n := range filter.deletes {
		delete(s.owned[iptables.TableFilter], n)
	}
	if full {
		s.rules[iptables.TableNAT] = 0
		s.rules[iptables.TableFilter] = 0
		clear(s.moved) // written in walk order, into fresh memory
	}
	for _, b := range append(s.batches, nat) {
		s.rules[iptables.TableNAT] += b.delta
	}
	s.rules[iptables.TableFilter] += filter.delta
	res.natRules, res.filterRules = s.rules[iptables.TableNAT], s.rules[iptables.TableFilter]
	return res, nil
}

// restore runs one iptables-restore and adds its duration to res.
func (s *familySyncer) restore(ctx context.Context, in []byte, res *syncResult) error {
	start := time.Now()
	err := s.ipt.Restore(ctx, in)
	res.restoreTime += time.Since(start)
	return err
}

// joinArgs renders arguments for restore input, quoting those with blanks.
func joinArgs(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\"") {
			a = `"` + strings.ReplaceAll(a, `"`, `\"`) + `"`
		}
		out[i] = a
	}
	return strings.Join(out, " ")
}

// applyService brings one Service's ports to their new state.
func (s *familySyncer) applyService(snap serviceSnapshot, full bool, nat *tableBuf, res *syncResult) {
	fam := s.gen.family
	ports := servicePortsFor(snap.svc, fam)
	var eps map[portKey][]endpoint
	if len(ports) > 0 {
		eps = endpointsFor(snap.slices, fam, s.gen.nodeName)
	}
	names := make([]servicePortName, 0, len(ports))
	for i := range ports {
		sp := &ports[i]
		names = append(names, sp.name)
		e := eps[portKey{name: sp.name.Port, protocol: sp.name.Protocol}]
		old := s.sps[sp.name]
		if !full && old != nil && old.sp.equal(sp) && slices.EqualFunc(old.eps, e, endpoint.equal) {
			continue
		}
		r := s.gen.servicePortRules(sp, e)
		st := &spState{sp: *sp, eps: e, rules: r}
		st.chains = make([]chainState, len(r.chains))
		for j, c := range r.chains {
			st.chains[j] = chainState{name: c.name, hash: maphash.Bytes(s.seed, c.rules), nrules: c.nrules}
		}
		st.entries = r.entries
		st.hairpin = r.hairpin
		s.diff(old, st, s.batch(), nat)
		if old != nil && sp.protocol == "udp" && lostServing(old.eps, e) {
			res.staleUDP = append(res.staleUDP, staleFor(sp, e))
		}
		s.sps[sp.name] = st
	}
	for _, n := range s.byService[snap.name] {
		if slices.Contains(names, n) {
			continue
		}
		old := s.sps[n]
		s.diff(old, nil, nil, nat)
		if old.sp.protocol == "udp" && lostServing(old.eps, nil) {
			res.staleUDP = append(res.staleUDP, staleFor(&old.sp, nil))
		}
		delete(s.sps, n)
	}
	if len(names) == 0 {
		delete(s.byService, snap.name)
	} else {
		s.byService[snap.name] = names
	}
}

// diff writes the chains of cur that differ from old (to w), removes chains
// old had and cur has not (in final, after the dispatch no longer points at
// them), and moves the dispatch entries.
func (s *familySyncer) diff(old, cur *spState, w, final *tableBuf) {
	var oldChains map[string]chainState
	if old != nil {
		oldChains = make(map[string]chainState, len(old.chains))
		for _, c := range old.chains {
			oldChains[c.name] = c
		}
	}
	if cur != nil {
		for i, c := range cur.chains {
			o, had := oldChains[c.name]
			if !had || o.hash != c.hash {
				rc := cur.rules.chains[i]
				w.chain(c.name, rc.rules, rc.nrules, o.nrules, had)
				s.moved[c.name] = true // cleared by a full sync
			}
			if !had {
				s.chains++
			}
			delete(oldChains, c.name)
		}
		cur.rules = spRules{} // the rule text is not kept: only hashes are needed later
	}
	for _, o := range oldChains {
		final.remove(o.name, o.nrules)
		delete(s.moved, o.name)
		s.chains--
	}

	type tk struct {
		tree treeID
		key  dkey
	}
	collect := func(st *spState) map[tk]string {
		if st == nil {
			return nil
		}
		m := make(map[tk]string, len(st.entries))
		for _, e := range st.entries {
			k := tk{e.tree, e.key}
			if prev, ok := m[k]; ok {
				m[k] = prev + "\n" + e.args
			} else {
				m[k] = e.args
			}
		}
		return m
	}
	var owner string
	if cur != nil {
		owner = ownerOf(cur.sp.name)
	} else {
		owner = ownerOf(old.sp.name)
	}
	var oldHP, curHP []netip.Addr
	if old != nil {
		oldHP = old.hairpin
	}
	if cur != nil {
		curHP = cur.hairpin
	}
	for _, a := range curHP {
		if s.hairpin[a]++; s.hairpin[a] == 1 {
			s.trees[treeNATHairpin].set(addrKey(a), "", s.gen.hairpinRule(a))
		}
	}
	for _, a := range oldHP {
		if s.hairpin[a]--; s.hairpin[a] == 0 {
			delete(s.hairpin, a)
			s.trees[treeNATHairpin].set(addrKey(a), "", "")
		}
	}

	oldE, curE := collect(old), collect(cur)
	for k := range oldE {
		if _, ok := curE[k]; !ok {
			s.trees[k.tree].set(k.key, owner, "")
		}
	}
	for k, args := range curE {
		if oldE[k] != args {
			s.trees[k.tree].set(k.key, owner, args)
		}
	}
}

// leftovers returns the restore input that deletes IRONLB-* chains found in
// the given iptables-save texts that this process does not own (left by an
// earlier run or version). Those are referenced by nothing of ours.
func (s *familySyncer) leftovers(saves map[iptables.Table][]byte) []byte {
	var in bytes.Buffer
	for _, t := range []iptables.Table{iptables.TableFilter, iptables.TableNAT} {
		b := newTableBuf(false)
		for _, name := range chainsIn(saves[t]) {
			if strings.HasPrefix(name, chainPrefix) && !s.owned[t][name] {
				b.remove(name, 0)
			}
		}
		appendTable(&in, string(t), b)
	}
	return in.Bytes()
}

// chainsIn returns the chain names declared in iptables-save output.
func chainsIn(save []byte) []string {
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(save))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if len(line) > 1 && line[0] == ':' {
			if name, _, ok := strings.Cut(line[1:], " "); ok {
				out = append(out, name)
			}
		}
	}
	return out
}

// healthState returns, for Services with a health check node port, the port
// and the number of ready local endpoints.
func (s *familySyncer) healthState(ports map[types.NamespacedName]uint16, local map[types.NamespacedName]int) {
	for n, st := range s.sps {
		if st.sp.healthCheckNodePort == 0 {
			continue
		}
		ports[n.NamespacedName] = st.sp.healthCheckNodePort
		cnt := 0
		for _, e := range st.eps {
			if e.local && e.ready {
				cnt++
			}
		}
		if cnt > local[n.NamespacedName] {
			local[n.NamespacedName] = cnt
		}
	}
}

func lostServing(old, cur []endpoint) bool {
	for _, o := range old {
		if !o.serving {
			continue
		}
		if !slices.ContainsFunc(cur, func(e endpoint) bool { return e.addr == o.addr && e.serving }) {
			return true
		}
	}
	return false
}

// staleService describes the frontends of a UDP Service port and the
// endpoints still serving it, for conntrack cleanup.
type staleService struct {
	frontends []netip.AddrPort
	nodePort  uint16
	serving   []netip.AddrPort
}

func staleFor(sp *servicePort, eps []endpoint) staleService {
	st := staleService{nodePort: sp.nodePort}
	st.frontends = append(st.frontends, netip.AddrPortFrom(sp.clusterIP, sp.port))
	for _, a := range sp.lbIPs {
		st.frontends = append(st.frontends, netip.AddrPortFrom(a, sp.port))
	}
	for _, a := range sp.externalIPs {
		st.frontends = append(st.frontends, netip.AddrPortFrom(a, sp.port))
	}
	for _, e := range eps {
		if e.serving {
			st.serving = append(st.serving, e.addr)
		}
	}
	return st
}
