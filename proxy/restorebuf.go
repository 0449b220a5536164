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
	// written names every chain declared, for the stale-chain sweep of a full sync.
	written map[string]bool
	// delta is the change in the number of rules the table holds.
	delta int
	// nchains and nrules count what this input writes.
	nchains, nrules int
}

func newTableBuf(full bool) *tableBuf {
	b := &tableBuf{full: full}
	if full {
		b.written = map[string]bool{}
	}
	return b
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
	if b.written != nil {
		b.written[name] = true
	}
}

// remove flushes and deletes a chain that had nrules rules.
func (b *tableBuf) remove(name string, nrules int) {
	b.decl.WriteByte(':')
	b.decl.WriteString(name)
	b.decl.WriteString(" - [0:0]\n")
	b.deletes = append(b.deletes, name)
	b.delta -= nrules
}

func (b *tableBuf) empty() bool { return b.decl.Len() == 0 }

// appendTo appends the table block ("*table ... COMMIT") to out.
func (b *tableBuf) appendTo(out *bytes.Buffer, table string) {
	if b.empty() {
		return
	}
	out.WriteString("*" + table + "\n")
	out.Write(b.decl.Bytes())
	out.Write(b.rules.Bytes())
	for _, d := range b.deletes {
		out.WriteString("-X " + d + "\n")
	}
	out.WriteString("COMMIT\n")
}
