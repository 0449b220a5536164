package iptables

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Packet is the first packet of a new connection, as the tracer sees it.
type Packet struct {
	Src      netip.Addr
	Dst      netip.Addr
	Protocol string // "tcp", "udp" or "sctp"
	SrcPort  uint16
	DstPort  uint16
	// FromLocal is true for a packet sent by a process on the node (nat OUTPUT
	// path); otherwise the packet arrives on InInterface (nat PREROUTING path).
	FromLocal   bool
	InInterface string
}

// Verdict is what happened to a packet.
type Verdict string

// Verdicts.
const (
	Accept Verdict = "ACCEPT"
	Drop   Verdict = "DROP"
	Reject Verdict = "REJECT"
)

// Outcome is one way a packet can go. Random balancing makes several outcomes
// possible for one packet; Trace returns all of them.
type Outcome struct {
	Verdict Verdict
	// Dst is where the packet is sent: the DNAT destination, or the original one.
	Dst netip.AddrPort
	// DNAT is true when the destination was rewritten.
	DNAT bool
	// Masquerade is true when the source is rewritten to the node's address.
	Masquerade bool
	// Local is true when the packet is delivered to a process on the node.
	Local bool
	// RandomFully is true when the masquerade uses fully random source ports.
	RandomFully bool
	// Probability is the chance of this outcome, from the random matches on its path.
	Probability float64
	// Recent names the recent-module lists the packet was recorded in (--set,
	// or --update that matched).
	Recent []string
	// Rules is the number of rules evaluated on this path, in every table.
	Rules int
	// NATRules is the number of rules evaluated in the nat table where the
	// connection's destination is decided (PREROUTING or OUTPUT).
	NATRules int
	// Chains lists the chains entered, in order (for debugging failed tests).
	Chains []string
}

// Tracer walks a Model's rules with a packet and tells every way it can go.
type Tracer struct {
	Model *Model
	// LocalAddrs are the node's addresses (addrtype LOCAL); loopback is always local.
	LocalAddrs []netip.Addr
	// Now is the time recent-module entries are compared with (zero: time.Now()).
	Now time.Time
}

type tstate struct {
	src     netip.Addr
	dst     netip.AddrPort
	mark    uint32
	dnat    bool
	masq    bool
	rfully  bool
	prob    float64
	recent  []string
	rules   int
	chains  []string
	verdict Verdict // set when terminated
}

type branch struct {
	st   tstate
	term string // "" returned/fell off; ACCEPT, DROP, REJECT
}

// ErrUnsupportedMatch is returned when a rule uses a match the tracer cannot decide.
var ErrUnsupportedMatch = errors.New("tracer: unsupported match")

// Trace returns every outcome of p. The model must not be changed while tracing.
func (tr *Tracer) Trace(p Packet) ([]Outcome, error) {
	if tr.Model == nil {
		return nil, errors.New("tracer: no model")
	}
	if !p.Src.IsValid() || !p.Dst.IsValid() {
		return nil, errors.New("tracer: packet needs source and destination")
	}
	tr.Model.mu.Lock()
	defer tr.Model.mu.Unlock()
	start := tstate{src: p.Src, dst: netip.AddrPortFrom(p.Dst, p.DstPort), prob: 1}
	var out []Outcome
	natHook := "PREROUTING"
	if p.FromLocal {
		natHook = "OUTPUT"
	}
	nat, err := tr.hook(p, TableNAT, natHook, start)
	if err != nil {
		return nil, err
	}
	for _, b := range nat {
		natRules := b.st.rules
		if b.term == "DROP" || b.term == "REJECT" {
			out = append(out, outcome(b.st, Verdict(b.term), false, natRules))
			continue
		}
		local := tr.isLocal(b.st.dst.Addr())
		var filterHook string
		switch {
		case p.FromLocal:
			filterHook = "OUTPUT"
		case local:
			filterHook = "INPUT"
		default:
			filterHook = "FORWARD"
		}
		fb, err := tr.hook(p, TableFilter, filterHook, b.st)
		if err != nil {
			return nil, err
		}
		for _, f := range fb {
			if f.term == "DROP" || f.term == "REJECT" {
				out = append(out, outcome(f.st, Verdict(f.term), false, natRules))
				continue
			}
			if !p.FromLocal && local {
				out = append(out, outcome(f.st, Accept, true, natRules))
				continue
			}
			pb, err := tr.hook(p, TableNAT, "POSTROUTING", f.st)
			if err != nil {
				return nil, err
			}
			for _, q := range pb {
				if q.term == "DROP" || q.term == "REJECT" {
					out = append(out, outcome(q.st, Verdict(q.term), false, natRules))
					continue
				}
				if !local {
					out = append(out, outcome(q.st, Accept, false, natRules))
					continue
				}
				ib, err := tr.hook(p, TableFilter, "INPUT", q.st)
				if err != nil {
					return nil, err
				}
				for _, in := range ib {
					v := Accept
					if in.term == "DROP" || in.term == "REJECT" {
						v = Verdict(in.term)
					}
					out = append(out, outcome(in.st, v, v == Accept, natRules))
				}
			}
		}
	}
	return out, nil
}

func outcome(st tstate, v Verdict, local bool, natRules int) Outcome {
	return Outcome{Verdict: v, Dst: st.dst, DNAT: st.dnat, Masquerade: st.masq, RandomFully: st.rfully, Probability: st.prob, Local: local,
		Recent: st.recent, Rules: st.rules, NATRules: natRules, Chains: st.chains}
}

func (tr *Tracer) isLocal(a netip.Addr) bool {
	return a.IsLoopback() || slices.Contains(tr.LocalAddrs, a)
}

func (tr *Tracer) hook(p Packet, tname Table, hook string, st tstate) ([]branch, error) {
	t := tr.Model.tables[tname]
	c := t.chains[hook]
	bs, err := tr.run(p, t, c, st, 0)
	if err != nil {
		return nil, err
	}
	for i := range bs {
		if bs[i].term == "" {
			bs[i].term = c.policy
		}
	}
	return bs, nil
}

const maxDepth = 64

func (tr *Tracer) run(p Packet, t *table, c *chain, st tstate, depth int) ([]branch, error) {
	if depth > maxDepth {
		return nil, errors.New("tracer: chains nested too deep")
	}
	st.chains = append(slices.Clip(st.chains), c.name)
	return tr.runFrom(p, t, c, 0, st, depth)
}

func (tr *Tracer) runFrom(p Packet, t *table, c *chain, i int, st tstate, depth int) ([]branch, error) {
	var out []branch
	for ; i < len(c.rules); i++ {
		r := c.rules[i]
		st.rules++
		yes, maybe, err := tr.matches(p, r, &st)
		if err != nil {
			return nil, fmt.Errorf("chain %s rule %d (%s): %w", c.name, i+1, r.text, err)
		}
		if maybe > 0 {
			// Random match: follow the path where it does not match too.
			miss := st
			miss.prob *= 1 - maybe
			rest, err := tr.runFrom(p, t, c, i+1, miss, depth)
			if err != nil {
				return nil, err
			}
			out = append(out, rest...)
			st.prob *= maybe
			yes = true
		}
		if !yes {
			continue
		}
		for _, m := range r.matches {
			// --set records the source; --update records it when it matched.
			if m.kind == mRecent && (m.op == "set" || m.op == "update") {
				st.recent = append(slices.Clip(st.recent), m.name)
			}
		}
		switch r.Target {
		case "ACCEPT", "DROP", "REJECT":
			return append(out, branch{st: st, term: r.Target}), nil
		case "RETURN":
			return append(out, branch{st: st}), nil
		case "MARK":
			switch r.markOp {
			case "or":
				st.mark |= r.markVal
			case "xor":
				st.mark ^= r.markVal
			default:
				st.mark = st.mark&^r.markMask ^ r.markVal
			}
			continue
		case "DNAT":
			if r.toAddr.IsValid() {
				st.dst = r.toAddr
			} else {
				st.dst = netip.AddrPortFrom(r.toAddrNoPrt, st.dst.Port())
			}
			st.dnat = true
			return append(out, branch{st: st, term: "ACCEPT"}), nil
		case "MASQUERADE":
			st.masq, st.rfully = true, r.randomFully
			return append(out, branch{st: st, term: "ACCEPT"}), nil
		}
		sub := t.chains[r.Target]
		if sub == nil {
			return nil, fmt.Errorf("tracer: chain %s jumps to missing chain %s", c.name, r.Target)
		}
		subs, err := tr.run(p, t, sub, st, depth+1)
		if err != nil {
			return nil, err
		}
		for _, b := range subs {
			switch {
			case b.term != "":
				out = append(out, b)
			case r.Goto:
				out = append(out, b) // return to our caller
			default:
				rest, err := tr.runFrom(p, t, c, i+1, b.st, depth)
				if err != nil {
					return nil, err
				}
				out = append(out, rest...)
			}
		}
		return out, nil
	}
	return append(out, branch{st: st}), nil
}

// matches reports whether r matches; maybe > 0 is the probability of a random
// match that may go either way.
func (tr *Tracer) matches(p Packet, r *Rule, st *tstate) (yes bool, maybe float64, err error) {
	for _, m := range r.matches {
		var ok bool
		switch m.kind {
		case mSrc:
			ok = m.prefix.Contains(st.src)
		case mDst:
			ok = m.prefix.Contains(st.dst.Addr())
		case mProto:
			ok = m.proto == "all" || m.proto == p.Protocol
		case mInIface:
			if p.FromLocal {
				return false, 0, fmt.Errorf("%w: -i on a locally generated packet", ErrUnsupportedMatch)
			}
			ok = ifaceMatch(m.iface, p.InInterface)
		case mOutIface:
			return false, 0, fmt.Errorf("%w: -o", ErrUnsupportedMatch)
		case mDport:
			ok = st.dst.Port() >= m.portLo && st.dst.Port() <= m.portHi
		case mSport:
			ok = p.SrcPort >= m.portLo && p.SrcPort <= m.portHi
		case mComment:
			ok = true
		case mAddrType:
			if m.srcType != "" {
				ok = m.srcType == "LOCAL" && tr.isLocal(st.src)
			} else {
				ok = m.dstType == "LOCAL" && tr.isLocal(st.dst.Addr())
			}
		case mConntrack:
			for _, s := range m.states {
				if s == "NEW" || (s == "DNAT" && st.dnat) {
					ok = true
				}
			}
		case mMark:
			ok = st.mark&m.mask == m.mark
		case mStatistic:
			switch {
			case m.prob >= 1:
				ok = true
			case m.prob <= 0:
				ok = false
			default:
				maybe = m.prob
				ok = true
			}
		case mRecent:
			if m.op == "set" {
				ok = true
				break
			}
			at, seen := tr.Model.recent[m.name][st.src]
			now := tr.Now
			if now.IsZero() {
				now = time.Now()
			}
			ok = seen && (m.seconds == 0 || now.Sub(at) <= time.Duration(m.seconds)*time.Second)
		}
		if ok == m.neg {
			return false, 0, nil
		}
	}
	return true, maybe, nil
}

func ifaceMatch(pattern, name string) bool {
	if p, ok := strings.CutSuffix(pattern, "+"); ok {
		return strings.HasPrefix(name, p)
	}
	return pattern == name
}
