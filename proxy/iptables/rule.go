package iptables

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Rule is one parsed iptables rule: its matches and its target. Rules are
// immutable once parsed; String renders them the way iptables-save does, and two
// rules are the same rule (for -C and -D) when their String forms are equal.
type Rule struct {
	matches []match
	// Target is a chain name or one of the built-in targets (ACCEPT, DROP,
	// RETURN, REJECT, DNAT, MASQUERADE, MARK).
	Target string
	// Goto is true for -g (the chain returns to the caller of this rule's chain).
	Goto bool

	// Target options.
	toAddr      netip.AddrPort // DNAT --to-destination (port 0: keep)
	toAddrNoPrt netip.Addr     // DNAT --to-destination without a port
	randomFully bool           // MASQUERADE --random-fully
	markOp      string         // MARK: "or", "xor", "set"
	markVal     uint32
	markMask    uint32
	rejectWith  string

	text string
}

type matchKind int

const (
	mSrc matchKind = iota
	mDst
	mProto
	mInIface
	mOutIface
	mDport
	mSport
	mComment
	mAddrType
	mConntrack
	mMark
	mStatistic
	mRecent
)

type match struct {
	kind   matchKind
	neg    bool
	module string // the -m module this option belongs to ("" for -s/-d/-p/-i/-o)

	prefix  netip.Prefix
	proto   string
	iface   string
	portLo  uint16
	portHi  uint16
	comment string
	srcType string // addrtype --src-type
	dstType string // addrtype --dst-type
	states  []string
	mark    uint32
	mask    uint32
	prob    float64
	probTxt string
	name    string // recent --name
	op      string // recent "set", "rcheck" or "update"
	seconds int
	reap    bool
}

// String renders the rule's arguments (without "-A CHAIN") in iptables-save order.
func (r *Rule) String() string { return r.text }

// Jumps returns the chain this rule jumps or goes to, or "" for a built-in target.
func (r *Rule) Jumps() string {
	if builtinTargets[r.Target] {
		return ""
	}
	return r.Target
}

var builtinTargets = map[string]bool{
	"ACCEPT": true, "DROP": true, "RETURN": true, "REJECT": true,
	"DNAT": true, "MASQUERADE": true, "MARK": true,
}

var protocols = map[string]bool{"tcp": true, "udp": true, "sctp": true, "icmp": true, "ipv6-icmp": true, "all": true}

// ParseRule parses rule arguments as they follow "-A CHAIN" in iptables-restore
// input, for the given family. It accepts the subset of iptables that ironlb's
// proxy writes (and that its tracer understands) and returns an error for
// anything else, never a partially understood rule.
func ParseRule(family Family, args []string) (*Rule, error) {
	r := &Rule{}
	neg := false
	modules := map[string]bool{}
	var proto string
	takeNeg := func() bool { n := neg; neg = false; return n }
	need := func(i int, opt string) (string, error) {
		if i+1 >= len(args) {
			return "", fmt.Errorf("option %s needs a value", opt)
		}
		return args[i+1], nil
	}
	var pending *match // the recent/statistic match being filled in by its options
	for i := 0; i < len(args); i++ {
		a := args[i]
		if r.Target != "" {
			if err := r.parseTargetOption(family, args, &i); err != nil {
				return nil, err
			}
			continue
		}
		switch a {
		case "!":
			if neg {
				return nil, errors.New("double negation")
			}
			neg = true
		case "-s", "--source", "-d", "--destination":
			v, err := need(i, a)
			if err != nil {
				return nil, err
			}
			p, err := parsePrefix(family, v)
			if err != nil {
				return nil, err
			}
			k := mSrc
			if a == "-d" || a == "--destination" {
				k = mDst
			}
			r.matches = append(r.matches, match{kind: k, neg: takeNeg(), prefix: p})
			i++
		case "-p", "--protocol":
			v, err := need(i, a)
			if err != nil {
				return nil, err
			}
			v = strings.ToLower(v)
			if !protocols[v] {
				return nil, fmt.Errorf("unknown protocol %q", v)
			}
			if proto != "" {
				return nil, errors.New("multiple -p flags")
			}
			proto = v
			r.matches = append(r.matches, match{kind: mProto, neg: takeNeg(), proto: v})
			i++
		case "-i", "--in-interface", "-o", "--out-interface":
			v, err := need(i, a)
			if err != nil {
				return nil, err
			}
			k := mInIface
			if a == "-o" || a == "--out-interface" {
				k = mOutIface
			}
			r.matches = append(r.matches, match{kind: k, neg: takeNeg(), iface: v})
			i++
		case "-m", "--match":
			v, err := need(i, a)
			if err != nil {
				return nil, err
			}
			if neg {
				return nil, errors.New("negation before -m")
			}
			switch v {
			case "tcp", "udp", "sctp", "comment", "addrtype", "conntrack", "mark", "statistic", "recent":
			default:
				return nil, fmt.Errorf("unsupported match module %q", v)
			}
			modules[v] = true
			if v == "statistic" {
				r.matches = append(r.matches, match{kind: mStatistic, module: v})
				pending = &r.matches[len(r.matches)-1]
			}
			if v == "recent" {
				r.matches = append(r.matches, match{kind: mRecent, module: v})
				pending = &r.matches[len(r.matches)-1]
			}
			i++
		case "-j", "--jump", "-g", "--goto":
			v, err := need(i, a)
			if err != nil {
				return nil, err
			}
			if neg {
				return nil, errors.New("negation before target")
			}
			if v == "" || len(v) > 28 || strings.ContainsAny(v, " \t\"'!") {
				return nil, fmt.Errorf("invalid target %q", v)
			}
			r.Target = v
			r.Goto = a == "-g" || a == "--goto"
			if r.Goto && builtinTargets[v] {
				return nil, fmt.Errorf("cannot goto built-in target %s", v)
			}
			i++
		case "--dport", "--destination-port", "--sport", "--source-port":
			if proto != "tcp" && proto != "udp" && proto != "sctp" {
				return nil, fmt.Errorf("%s needs -p tcp, udp or sctp", a)
			}
			mod := proto
			if !modules[mod] {
				modules[mod] = true // implicit module load, as iptables does
			}
			v, err := need(i, a)
			if err != nil {
				return nil, err
			}
			lo, hi, err := parsePortRange(v)
			if err != nil {
				return nil, err
			}
			k := mDport
			if a == "--sport" || a == "--source-port" {
				k = mSport
			}
			r.matches = append(r.matches, match{kind: k, neg: takeNeg(), module: mod, portLo: lo, portHi: hi})
			i++
		case "--comment":
			if !modules["comment"] {
				return nil, errors.New("--comment without -m comment")
			}
			v, err := need(i, a)
			if err != nil {
				return nil, err
			}
			if len(v) > 255 {
				return nil, errors.New("comment longer than 255 characters")
			}
			r.matches = append(r.matches, match{kind: mComment, module: "comment", comment: v})
			i++
		case "--src-type", "--dst-type":
			if !modules["addrtype"] {
				return nil, fmt.Errorf("%s without -m addrtype", a)
			}
			v, err := need(i, a)
			if err != nil {
				return nil, err
			}
			switch v {
			case "LOCAL", "UNICAST", "BROADCAST", "MULTICAST":
			default:
				return nil, fmt.Errorf("unsupported address type %q", v)
			}
			m := match{kind: mAddrType, neg: takeNeg(), module: "addrtype"}
			if a == "--src-type" {
				m.srcType = v
			} else {
				m.dstType = v
			}
			r.matches = append(r.matches, m)
			i++
		case "--ctstate":
			if !modules["conntrack"] {
				return nil, errors.New("--ctstate without -m conntrack")
			}
			v, err := need(i, a)
			if err != nil {
				return nil, err
			}
			states := strings.Split(v, ",")
			for _, s := range states {
				switch s {
				case "NEW", "ESTABLISHED", "RELATED", "INVALID", "DNAT", "SNAT":
				default:
					return nil, fmt.Errorf("unknown conntrack state %q", s)
				}
			}
			r.matches = append(r.matches, match{kind: mConntrack, neg: takeNeg(), module: "conntrack", states: states})
			i++
		case "--mark":
			if !modules["mark"] {
				return nil, errors.New("--mark without -m mark")
			}
			v, err := need(i, a)
			if err != nil {
				return nil, err
			}
			val, mask, err := parseMark(v)
			if err != nil {
				return nil, err
			}
			r.matches = append(r.matches, match{kind: mMark, neg: takeNeg(), module: "mark", mark: val, mask: mask})
			i++
		case "--mode", "--probability":
			if pending == nil || pending.kind != mStatistic {
				return nil, fmt.Errorf("%s without -m statistic", a)
			}
			v, err := need(i, a)
			if err != nil {
				return nil, err
			}
			if a == "--mode" {
				if v != "random" {
					return nil, fmt.Errorf("unsupported statistic mode %q", v)
				}
			} else {
				p, err := strconv.ParseFloat(v, 64)
				if err != nil || p < 0 || p > 1 {
					return nil, fmt.Errorf("invalid probability %q", v)
				}
				pending.prob, pending.probTxt = p, v
			}
			if neg {
				return nil, errors.New("negated statistic match is not supported")
			}
			i++
		case "--name", "--set", "--rcheck", "--update", "--seconds", "--reap", "--rsource":
			if pending == nil || pending.kind != mRecent {
				return nil, fmt.Errorf("%s without -m recent", a)
			}
			if neg {
				return nil, errors.New("negated recent match is not supported")
			}
			switch a {
			case "--name":
				v, err := need(i, a)
				if err != nil {
					return nil, err
				}
				if v == "" || len(v) > 200 {
					return nil, fmt.Errorf("invalid recent list name %q", v)
				}
				pending.name = v
				i++
			case "--set", "--rcheck", "--update":
				if pending.op != "" {
					return nil, errors.New("recent: more than one of --set, --rcheck and --update")
				}
				pending.op = strings.TrimPrefix(a, "--")
			case "--seconds":
				v, err := need(i, a)
				if err != nil {
					return nil, err
				}
				s, err := strconv.Atoi(v)
				if err != nil || s <= 0 {
					return nil, fmt.Errorf("invalid --seconds %q", v)
				}
				pending.seconds = s
				i++
			case "--reap":
				pending.reap = true
			case "--rsource":
			}
		default:
			return nil, fmt.Errorf("unsupported option %q", a)
		}
	}
	if neg {
		return nil, errors.New("dangling negation")
	}
	if r.Target == "" {
		return nil, errors.New("rule has no target")
	}
	for i := range r.matches {
		m := &r.matches[i]
		switch m.kind {
		case mRecent:
			if m.name == "" || m.op == "" {
				return nil, errors.New("recent needs --name and one of --set, --rcheck or --update")
			}
			if m.op == "set" && (m.seconds != 0 || m.reap) {
				return nil, errors.New("recent --seconds and --reap only go with --rcheck or --update")
			}
			if m.reap && m.seconds == 0 {
				return nil, errors.New("recent --reap needs --seconds")
			}
		case mStatistic:
			if m.probTxt == "" {
				return nil, errors.New("statistic needs --mode random --probability")
			}
		}
	}
	if err := r.checkTarget(proto); err != nil {
		return nil, err
	}
	r.text = r.render()
	return r, nil
}

func (r *Rule) parseTargetOption(family Family, args []string, i *int) error {
	a := args[*i]
	val := func() (string, error) {
		if *i+1 >= len(args) {
			return "", fmt.Errorf("option %s needs a value", a)
		}
		*i++
		return args[*i], nil
	}
	switch {
	case r.Target == "DNAT" && a == "--to-destination":
		v, err := val()
		if err != nil {
			return err
		}
		if ap, err := netip.ParseAddrPort(v); err == nil {
			if ap.Addr().Zone() != "" || familyOf(ap.Addr()) != family || ap.Port() == 0 {
				return fmt.Errorf("invalid DNAT destination %q", v)
			}
			r.toAddr = ap
			return nil
		}
		ad, err := netip.ParseAddr(v)
		if err != nil || ad.Zone() != "" || familyOf(ad) != family {
			return fmt.Errorf("invalid DNAT destination %q", v)
		}
		r.toAddrNoPrt = ad
		return nil
	case r.Target == "MASQUERADE" && a == "--random-fully":
		r.randomFully = true
		return nil
	case r.Target == "MARK" && (a == "--or-mark" || a == "--xor-mark" || a == "--set-xmark" || a == "--set-mark"):
		if r.markOp != "" {
			return errors.New("MARK: more than one operation")
		}
		v, err := val()
		if err != nil {
			return err
		}
		m, mask, err := parseMark(v)
		if err != nil {
			return err
		}
		switch a {
		case "--or-mark":
			r.markOp, r.markVal = "or", m
		case "--xor-mark":
			r.markOp, r.markVal = "xor", m
		default:
			r.markOp, r.markVal, r.markMask = "set", m, mask
		}
		return nil
	case r.Target == "REJECT" && a == "--reject-with":
		v, err := val()
		if err != nil {
			return err
		}
		r.rejectWith = v
		return nil
	}
	return fmt.Errorf("unsupported option %q for target %s", a, r.Target)
}

func (r *Rule) checkTarget(proto string) error {
	switch r.Target {
	case "DNAT":
		if !r.toAddr.IsValid() && !r.toAddrNoPrt.IsValid() {
			return errors.New("DNAT needs --to-destination")
		}
		if r.toAddr.IsValid() && proto != "tcp" && proto != "udp" && proto != "sctp" {
			return errors.New("DNAT to a port needs -p tcp, udp or sctp")
		}
	case "MARK":
		if r.markOp == "" {
			return errors.New("MARK needs an operation")
		}
	}
	return nil
}

func (r *Rule) render() string {
	var b strings.Builder
	w := func(s ...string) {
		for _, x := range s {
			if b.Len() > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(x)
		}
	}
	neg := func(n bool) {
		if n {
			w("!")
		}
	}
	// iptables-save order: addresses, interfaces, protocol, then matches in order.
	for _, k := range []matchKind{mSrc, mDst, mInIface, mOutIface, mProto} {
		for _, m := range r.matches {
			if m.kind != k {
				continue
			}
			neg(m.neg)
			switch k {
			case mSrc:
				w("-s", m.prefix.String())
			case mDst:
				w("-d", m.prefix.String())
			case mInIface:
				w("-i", m.iface)
			case mOutIface:
				w("-o", m.iface)
			case mProto:
				w("-p", m.proto)
			}
		}
	}
	lastModule := ""
	for _, m := range r.matches {
		if m.module == "" {
			continue
		}
		if m.module != lastModule || m.kind == mStatistic || m.kind == mRecent {
			w("-m", m.module)
			lastModule = m.module
		}
		switch m.kind {
		case mDport, mSport:
			neg(m.neg)
			opt := "--dport"
			if m.kind == mSport {
				opt = "--sport"
			}
			pr := strconv.Itoa(int(m.portLo))
			if m.portHi != m.portLo {
				pr += ":" + strconv.Itoa(int(m.portHi))
			}
			w(opt, pr)
		case mComment:
			w("--comment", quote(m.comment))
		case mAddrType:
			neg(m.neg)
			if m.srcType != "" {
				w("--src-type", m.srcType)
			} else {
				w("--dst-type", m.dstType)
			}
		case mConntrack:
			neg(m.neg)
			w("--ctstate", strings.Join(m.states, ","))
		case mMark:
			neg(m.neg)
			w("--mark", fmt.Sprintf("%#x/%#x", m.mark, m.mask))
		case mStatistic:
			w("--mode", "random", "--probability", m.probTxt)
		case mRecent:
			w("--" + m.op)
			if m.seconds > 0 {
				w("--seconds", strconv.Itoa(m.seconds))
			}
			if m.reap {
				w("--reap")
			}
			w("--name", m.name, "--rsource")
		}
	}
	if r.Goto {
		w("-g", r.Target)
	} else {
		w("-j", r.Target)
	}
	switch r.Target {
	case "DNAT":
		if r.toAddr.IsValid() {
			w("--to-destination", r.toAddr.String())
		} else {
			w("--to-destination", r.toAddrNoPrt.String())
		}
	case "MASQUERADE":
		if r.randomFully {
			w("--random-fully")
		}
	case "MARK":
		switch r.markOp {
		case "or":
			w("--set-xmark", fmt.Sprintf("%#x/%#x", r.markVal, r.markVal))
		case "xor":
			w("--set-xmark", fmt.Sprintf("%#x/0x0", r.markVal))
		default:
			w("--set-xmark", fmt.Sprintf("%#x/%#x", r.markVal, r.markMask))
		}
	case "REJECT":
		if r.rejectWith != "" {
			w("--reject-with", r.rejectWith)
		}
	}
	return b.String()
}

// quote renders a comment the way iptables-save does: bare when it has no
// spaces or quotes, else in double quotes with inner quotes escaped.
func quote(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t\"\\'") {
		return s
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

func parsePrefix(family Family, s string) (netip.Prefix, error) {
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		p, err = netip.ParsePrefix(s)
		if err != nil {
			return p, fmt.Errorf("invalid address %q: %w", s, err)
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return p, fmt.Errorf("invalid address %q: %w", s, err)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if p.Addr().Zone() != "" || familyOf(p.Addr()) != family {
		return p, fmt.Errorf("address %q is not %s", s, family)
	}
	return p.Masked(), nil
}

func parsePortRange(s string) (uint16, uint16, error) {
	lo, hi, isRange := strings.Cut(s, ":")
	l, err := strconv.ParseUint(lo, 10, 16)
	if err != nil {
		return 0, 0, fmt.Errorf("invalid port %q", s)
	}
	h := l
	if isRange {
		h, err = strconv.ParseUint(hi, 10, 16)
		if err != nil || h < l {
			return 0, 0, fmt.Errorf("invalid port range %q", s)
		}
	}
	return uint16(l), uint16(h), nil
}

func parseMark(s string) (uint32, uint32, error) {
	v, m, hasMask := strings.Cut(s, "/")
	val, err := strconv.ParseUint(v, 0, 32)
	if err != nil {
		return 0, 0, fmt.Errorf("invalid mark %q", s)
	}
	mask := uint64(0xffffffff)
	if hasMask {
		mask, err = strconv.ParseUint(m, 0, 32)
		if err != nil {
			return 0, 0, fmt.Errorf("invalid mark mask %q", s)
		}
	}
	return uint32(val), uint32(mask), nil
}

func familyOf(a netip.Addr) Family {
	if a.Is4() {
		return IPv4
	}
	return IPv6
}
