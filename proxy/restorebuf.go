package proxy

import (
	"bytes"
	"slices"
	"strings"
)

// tableBuf collects one table's part of an iptables-restore input: chains
// to write (declared, which creates or flushes them, with their rules),
// chains to delete, and rules to insert into built-in chains.
type tableBuf struct {
	full   bool
	chains []chainText
	// deletes are flushed with the other chains and deleted after every
	// rule, so that every rule that referenced them has been flushed or
	// rewritten before they go, as the kernel requires.
	deletes []string
	// inserts are "-I CHAIN 1 ..." lines for built-in chains, after the rules.
	inserts []string
	// written names every chain declared and not deleted.
	written map[string]bool
	// delta is the change in the number of rules the table holds.
	delta int
	// nchains and nrules count what this input writes.
	nchains, nrules int
}

// chainText is a chain to declare and the "-A NAME ...\n" lines of its rules.
type chainText struct {
	name  string
	rules []byte
}

func newTableBuf(full bool) *tableBuf {
	return &tableBuf{full: full, written: map[string]bool{}}
}

// chain writes a chain with its rules (lines "-A NAME ...\n", copied).
// oldRules is the number of rules it had, existed whether it existed.
func (b *tableBuf) chain(name string, rules []byte, nrules, oldRules int, existed bool) {
	b.chains = append(b.chains, chainText{name: name, rules: bytes.Clone(rules)})
	b.nchains++
	b.written[name] = true
	b.nrules += nrules
	if existed && !b.full {
		b.delta -= oldRules
	}
	b.delta += nrules
}

// remove flushes and deletes a chain that had nrules rules.
func (b *tableBuf) remove(name string, nrules int) {
	b.chains = append(b.chains, chainText{name: name})
	b.deletes = append(b.deletes, name)
	b.delta -= nrules
	b.nchains++
}

func (b *tableBuf) empty() bool { return len(b.chains) == 0 && len(b.inserts) == 0 }

// appendTable writes one table block made of several buffers.
//
// The order of the lines is chosen for iptables-nft-restore (1.8.9): for
// every line it inserts the chain names the line mentions into a list kept
// sorted by name, walking the list from its smallest name until it finds the
// place, so a line costs the number of names already listed that sort before
// the names it mentions, each a likely cache miss. Declarations first and
// then every rule (as kube-proxy writes) cost for each rule about half of
// all chains of the input: 10^10 steps, a quarter of an hour, for 10,000
// Services of 10 endpoints.
//
// Here a chain is written (declared, then its rules) right after the chains
// it jumps to that this input writes, depth first from the chains nothing
// else here jumps to, larger names first. The dispatch tree of Service
// addresses is then written leaf by leaf, each leaf right after the Service
// chains it jumps to, and both are named in address order, so most chains
// are the smallest name listed when they are written: a rule costs one step
// plus the dispatch chains written before it. Jumps into chains written
// earlier from elsewhere (the NodePort trees) still cost about half of the
// Service chains each.
func appendTable(out *bytes.Buffer, table string, bufs ...*tableBuf) {
	var inserts, deletes []string
	byName := map[string]*chainText{}
	var names []string
	for _, b := range bufs {
		for i := range b.chains {
			c := &b.chains[i]
			byName[c.name] = c
			names = append(names, c.name)
		}
		inserts = append(inserts, b.inserts...)
		deletes = append(deletes, b.deletes...)
	}
	if len(names) == 0 && len(inserts) == 0 {
		return
	}
	slices.SortFunc(names, func(a, b string) int { return strings.Compare(b, a) })
	targets := make(map[string][]string, len(names))
	referenced := make(map[string]bool, len(names))
	for _, n := range names {
		var ts []string
		for rest := byName[n].rules; ; {
			t, next := nextTarget(rest)
			if t == "" {
				break
			}
			if _, ok := byName[t]; ok && t != n && !slices.Contains(ts, t) {
				ts = append(ts, t)
				referenced[t] = true
			}
			rest = next
		}
		slices.SortFunc(ts, func(a, b string) int { return strings.Compare(b, a) })
		targets[n] = ts
	}
	out.WriteString("*" + table + "\n")
	const (
		visiting = 1
		written  = 2
	)
	state := make(map[string]int, len(names))
	var write func(n string)
	write = func(n string) {
		if state[n] != 0 {
			return // written, or a loop the kernel will refuse anyway
		}
		state[n] = visiting
		for _, t := range targets[n] {
			write(t)
		}
		state[n] = written
		out.WriteByte(':')
		out.WriteString(n)
		out.WriteString(" - [0:0]\n")
		out.Write(byName[n].rules)
	}
	for _, n := range names {
		if !referenced[n] {
			write(n)
		}
	}
	for _, n := range names {
		write(n)
	}
	for _, l := range inserts {
		out.WriteString(l + "\n")
	}
	for _, d := range deletes {
		out.WriteString("-X " + d + "\n")
	}
	out.WriteString("COMMIT\n")
}

var jumpMarks = [][]byte{[]byte(" -j " + chainPrefix), []byte(" -g " + chainPrefix)}

// nextTarget finds the next IRONLB chain a jump or goto in rules names, and
// the text after it.
func nextTarget(rules []byte) (string, []byte) {
	at, mark := -1, 0
	for _, m := range jumpMarks {
		if i := bytes.Index(rules, m); i >= 0 && (at < 0 || i < at) {
			at, mark = i, len(m)
		}
	}
	if at < 0 {
		return "", nil
	}
	start := at + mark - len(chainPrefix)
	end := start
	for end < len(rules) && rules[end] != ' ' && rules[end] != '\n' {
		end++
	}
	return string(rules[start:end]), rules[end:]
}
