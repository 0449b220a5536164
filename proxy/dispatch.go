package proxy

import (
	"bytes"
	"crypto/sha256"
	"encoding/base32"
	"encoding/binary"
	"hash/maphash"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/ironlb/ironlb/proxy/iptables"
)

// treeShape is the shape of a dispatch tree. A packet walks at most
// width/stride levels, each with at most 1<<stride jump rules, and then a leaf
// chain with at most bucket rules (a key, an address or a port, has one rule
// per Service port on it; a key with more rules than that is a leaf of its
// own). Levels where the keys take a single branch are skipped (path
// compression), so the depth is about log_{1<<stride}(R/bucket) for R rules
// spread over the key space.
//
// Wider strides and bigger buckets mean fewer chains and more rules walked.
// Chains are what iptables-nft-restore and the kernel pay for on every
// commit (see the package doc), and a rule walked costs nanoseconds, so the
// shapes favour few chains.
type treeShape struct {
	stride int // bits per level; divides the key width
	bucket int // most rules in a leaf
}

var (
	// serviceShape is the shape of the trees of Service addresses and ports.
	serviceShape = treeShape{stride: 2, bucket: 64}
	// hairpinShape is the shape of the tree of endpoint addresses, which is
	// walked only by new connections the node DNATed.
	hairpinShape = treeShape{stride: 2, bucket: 32}
)

const dispatchPrefix = "IRONLB-DSP-"

// dkey is a dispatch key: an address (IPv4 in the top 32 bits, IPv6 in all
// 128) or a port (top 16 bits), read from the most significant bit.
type dkey struct{ hi, lo uint64 }

func addrKey(a netip.Addr) dkey {
	if a.Is4() {
		b := a.As4()
		return dkey{hi: uint64(binary.BigEndian.Uint32(b[:])) << 32}
	}
	b := a.As16()
	return dkey{hi: binary.BigEndian.Uint64(b[:8]), lo: binary.BigEndian.Uint64(b[8:])}
}

func portDKey(p uint16) dkey { return dkey{hi: uint64(p) << 48} }

// field returns n bits (n <= 8) starting at bit pos.
func (k dkey) field(pos, n int) int {
	var v uint64
	if pos < 64 {
		v = k.hi << uint(pos)
		if pos+n > 64 {
			v |= k.lo >> uint(64-pos)
		}
	} else {
		v = k.lo << uint(pos-64)
	}
	return int(v >> uint(64-n))
}

func (k dkey) masked(bits int) dkey {
	switch {
	case bits <= 0:
		return dkey{}
	case bits < 64:
		return dkey{hi: k.hi &^ (^uint64(0) >> uint(bits))}
	case bits == 64:
		return dkey{hi: k.hi}
	case bits < 128:
		return dkey{hi: k.hi, lo: k.lo &^ (^uint64(0) >> uint(bits-64))}
	}
	return k
}

func (k dkey) compare(o dkey) int {
	if k.hi != o.hi {
		if k.hi < o.hi {
			return -1
		}
		return 1
	}
	switch {
	case k.lo < o.lo:
		return -1
	case k.lo > o.lo:
		return 1
	}
	return 0
}

type tnode struct {
	key    dkey // the node's prefix, masked to bits
	bits   int
	count  int      // number of rules of the keys below (the node's weight)
	kids   []*tnode // non-empty children in key order (empties are removed after rendering)
	owners map[string]string

	dirty  bool   // something below changed since the last render
	mat    bool   // a chain exists for this node
	hash   uint64 // hash of the chain's rules when it was written
	nrules int    // rules in the chain when it was written
	name   string // chain name, computed once
}

func (n *tnode) child(idx int, stride int) (*tnode, int) {
	for i, c := range n.kids {
		ci := c.key.field(n.bits, stride)
		if ci == idx {
			return c, i
		}
		if ci > idx {
			return nil, i
		}
	}
	return nil, len(n.kids)
}

// dispatchTree is a trie of chains that sends a packet to the rules of its
// destination (address or port) in few steps. Its chains are a pure function
// of the set of entries: the same entries give the same chains, however they
// were reached, so an incremental render equals a full one.
//
// A node is a chain when it is the root, or its parent holds more than
// bucket keys and it holds at most bucket keys (a leaf: the
// rules of all its keys) or has two or more non-empty children (a branch: one
// "-g" per child). Single-child branches are skipped.
type dispatchTree struct {
	table    iptables.Table
	rootName string
	letter   byte // names the tree's chains (lower case: never in a hash)
	// namer, when set, names the tree's chains instead (see clusterIPChainName).
	namer func(k dkey, bits int) string
	width int
	shape treeShape
	// match renders the match arguments of a prefix of the key space.
	match func(k dkey, bits int) string
	root  *tnode
	seed  maphash.Seed
	buf   bytes.Buffer
}

func newDispatchTree(table iptables.Table, rootName string, letter byte, width int, shape treeShape, match func(dkey, int) string, seed maphash.Seed) *dispatchTree {
	return &dispatchTree{table: table, rootName: rootName, letter: letter, width: width, shape: shape, match: match, root: &tnode{}, seed: seed}
}

// set puts (args != "") or removes (args == "") the rule arguments an owner
// has at key. The rules of one key are ordered by owner.
func (t *dispatchTree) set(k dkey, owner, args string) {
	stride := t.shape.stride
	path := make([]*tnode, 1, t.width/stride+1)
	path[0] = t.root
	n := t.root
	for n.bits < t.width {
		idx := k.field(n.bits, stride)
		c, at := n.child(idx, stride)
		if c == nil {
			if args == "" {
				return
			}
			c = &tnode{key: k.masked(n.bits + stride), bits: n.bits + stride}
			n.kids = slices.Insert(n.kids, at, c)
		}
		n = c
		path = append(path, n)
	}
	old, had := n.owners[owner]
	switch {
	case args == "" && !had, had && old == args:
		return
	}
	d := -lineCount(old)
	if args == "" {
		delete(n.owners, owner)
	} else {
		if n.owners == nil {
			n.owners = map[string]string{}
		}
		n.owners[owner] = args
		d += lineCount(args)
	}
	for _, p := range path {
		p.count += d
		p.dirty = true
	}
}

// chainName names a node's chain. For keys of up to 32 bits (IPv4 addresses
// and ports) the name spells the node's path, one digit per level after the
// tree's letter: a parent's name is a prefix of its children's, so a subtree's
// chains are adjacent in name order, which is what makes writing them cheap
// for iptables-nft-restore (see appendTable). IPv6 paths are too long for
// the 28 characters of a chain name; they are named by a hash.
func (t *dispatchTree) chainName(n *tnode) string {
	if n == t.root {
		return t.rootName
	}
	if n.name != "" {
		return n.name
	}
	if t.namer != nil {
		n.name = t.namer(n.key, n.bits)
		return n.name
	}
	if digits := n.bits / t.shape.stride; len(dispatchPrefix)+1+t.width/t.shape.stride <= 28 {
		b := make([]byte, 0, len(dispatchPrefix)+1+digits)
		b = append(b, dispatchPrefix...)
		b = append(b, t.letter)
		for i := 0; i < digits; i++ {
			b = append(b, "0123456789abcdef"[n.key.field(i*t.shape.stride, t.shape.stride)])
		}
		n.name = string(b)
		return n.name
	}
	var b [16 + 8 + 1]byte
	binary.BigEndian.PutUint64(b[0:], n.key.hi)
	binary.BigEndian.PutUint64(b[8:], n.key.lo)
	b[16] = byte(n.bits)
	h := sha256.Sum256(append([]byte(t.rootName), b[:17]...))
	n.name = dispatchPrefix + string(t.letter) + base32.StdEncoding.EncodeToString(h[:])[:15]
	return n.name
}

func lineCount(args string) int {
	if args == "" {
		return 0
	}
	return 1 + strings.Count(args, "\n")
}

// leaf reports whether n's chain holds rules (not jumps to children).
func (t *dispatchTree) leaf(n *tnode) bool {
	return n.count <= t.shape.bucket || n.bits == t.width
}

func (t *dispatchTree) materialized(n *tnode, parentCount int) bool {
	return n.count > 0 && parentCount > t.shape.bucket && (t.leaf(n) || len(n.kids) >= 2)
}

// render writes the chains that changed since the last render (all of them
// when full) to out, and removes chains that are no longer needed.
func (t *dispatchTree) render(out *tableBuf, full bool) {
	if full || t.root.dirty || !t.root.mat {
		t.visit(t.root, 0, full, out)
	}
}

func (t *dispatchTree) visit(n *tnode, parentCount int, full bool, out *tableBuf) {
	isRoot := n == t.root
	for _, c := range n.kids {
		if full || c.dirty {
			t.visit(c, n.count, full, out)
			continue
		}
		if cm := t.materialized(c, n.count); cm != c.mat {
			// The parent crossed the bucket size: a clean child's chain appears
			// or goes, its rules unchanged.
			if cm {
				t.write(c, out)
			} else {
				out.remove(t.chainName(c), c.nrules)
				c.nrules = 0
			}
			c.mat = cm
		}
	}
	n.kids = slices.DeleteFunc(n.kids, func(c *tnode) bool { return c.count == 0 })
	mat := isRoot || t.materialized(n, parentCount)
	switch {
	case mat && (full || n.dirty || !n.mat):
		t.write(n, out)
	case !mat && n.mat:
		out.remove(t.chainName(n), n.nrules)
		n.nrules = 0
	}
	n.mat = mat
	n.dirty = false
}

// write renders n's chain and writes it when its rules changed.
func (t *dispatchTree) write(n *tnode, out *tableBuf) {
	name := t.chainName(n)
	t.buf.Reset()
	nrules := 0
	if t.leaf(n) {
		t.leafRules(n, name, &nrules)
	} else {
		for _, c := range n.kids {
			target := c
			for !t.leaf(target) && len(target.kids) == 1 {
				target = target.kids[0]
			}
			t.buf.WriteString("-A ")
			t.buf.WriteString(name)
			t.buf.WriteByte(' ')
			t.buf.WriteString(t.match(target.key, target.bits))
			t.buf.WriteString(" -g ")
			t.buf.WriteString(t.chainName(target))
			t.buf.WriteByte('\n')
			nrules++
		}
	}
	h := maphash.Bytes(t.seed, t.buf.Bytes())
	if !n.mat || h != n.hash || out.full {
		out.chain(name, t.buf.Bytes(), nrules, n.nrules, n.mat)
	}
	n.hash, n.nrules = h, nrules
}

func (t *dispatchTree) leafRules(n *tnode, name string, nrules *int) {
	if len(n.owners) > 0 {
		owners := make([]string, 0, len(n.owners))
		for o := range n.owners {
			owners = append(owners, o)
		}
		slices.Sort(owners)
		for _, o := range owners {
			for _, line := range splitLines(n.owners[o]) {
				t.buf.WriteString("-A ")
				t.buf.WriteString(name)
				t.buf.WriteByte(' ')
				t.buf.WriteString(line)
				t.buf.WriteByte('\n')
				*nrules++
			}
		}
	}
	for _, c := range n.kids {
		if c.count > 0 {
			t.leafRules(c, name, nrules)
		}
	}
}

// splitLines splits an owner's rule arguments: one owner may have several
// rules at one key (e.g. an external IP equal to the ClusterIP).
func splitLines(s string) []string {
	var out []string
	for len(s) > 0 {
		i := bytes.IndexByte([]byte(s), '\n')
		if i < 0 {
			return append(out, s)
		}
		out = append(out, s[:i])
		s = s[i+1:]
	}
	return out
}

// addrMatch renders "-d prefix" for an address tree of the given width.
func addrMatch(width int) func(dkey, int) string { return prefixMatch(width, "-d ") }

// srcMatch renders "-s prefix" for a source address tree of the given width.
func srcMatch(width int) func(dkey, int) string { return prefixMatch(width, "-s ") }

func prefixMatch(width int, opt string) func(dkey, int) string {
	return func(k dkey, bits int) string {
		var a netip.Addr
		if width == 32 {
			var b [4]byte
			binary.BigEndian.PutUint32(b[:], uint32(k.hi>>32))
			a = netip.AddrFrom4(b)
		} else {
			var b [16]byte
			binary.BigEndian.PutUint64(b[:8], k.hi)
			binary.BigEndian.PutUint64(b[8:], k.lo)
			a = netip.AddrFrom16(b)
		}
		return opt + netip.PrefixFrom(a, bits).String()
	}
}

// portMatch renders "-p proto -m proto --dport lo[:hi]" for a port tree.
func portMatch(proto string) func(dkey, int) string {
	return func(k dkey, bits int) string {
		lo := uint16(k.hi >> 48)
		hi := lo | uint16(0xffff>>uint(bits))
		if bits == 0 {
			hi = 0xffff
		}
		r := strconv.Itoa(int(lo))
		if hi != lo {
			r += ":" + strconv.Itoa(int(hi))
		}
		return "-p " + proto + " -m " + proto + " --dport " + r
	}
}
