package proxy

import "bytes"

// tableBuf collects one table's part of an iptables-restore input: chain
// declarations (which create or flush), then rules, then deletions. Deletions
// come last so that every rule that referenced a deleted chain has been
// flushed or rewritten before the chain goes, as the kernel requires.
type tableBuf struct {
	full    bool
	decl    bytes.Buffer
	rules   bytes.Buffer
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

func newTableBuf(full bool) *tableBuf {
	return &tableBuf{full: full, written: map[string]bool{}}
}

// chain writes a chain with its rules (lines "-A NAME ...\n"). oldRules is
// the number of rules it had, existed whether it existed.
func (b *tableBuf) chain(name string, rules []byte, nrules, oldRules int, existed bool) {
	b.declare(name)
	b.rules.Write(rules)
	b.nrules += nrules
	if existed && !b.full {
		b.delta -= oldRules
	}
	b.delta += nrules
}

func (b *tableBuf) declare(name string) {
	b.decl.WriteByte(':')
	b.decl.WriteString(name)
	b.decl.WriteString(" - [0:0]\n")
	b.nchains++
	b.written[name] = true
}

// remove flushes and deletes a chain that had nrules rules.
func (b *tableBuf) remove(name string, nrules int) {
	b.decl.WriteByte(':')
	b.decl.WriteString(name)
	b.decl.WriteString(" - [0:0]\n")
	b.deletes = append(b.deletes, name)
	b.delta -= nrules
	b.nchains++
}

func (b *tableBuf) empty() bool { return b.decl.Len() == 0 && len(b.inserts) == 0 }
