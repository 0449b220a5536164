package election

import (
	"bytes"
	"crypto/sha256"
	"net/netip"
)

// rank is a node's rendezvous weight for one address: sha256(node + "#" + ip),
// where ip is the address's canonical text (netip.Addr.String). Lower wins. The
// node name is compared when two digests are equal so the order stays total.
type rank struct {
	sum  [sha256.Size]byte
	node string
}

func rankOf(node string, ip netip.Addr) rank {
	var room [128]byte // a Node name and an IPv6 address fit without allocating
	buf := append(room[:0], node...)
	buf = append(buf, '#')
	buf = ip.AppendTo(buf)
	return rank{sum: sha256.Sum256(buf), node: node}
}

func (r rank) less(o rank) bool {
	if c := bytes.Compare(r.sum[:], o.sum[:]); c != 0 {
		return c < 0
	}
	return r.node < o.node
}

// key orders the candidates for one address: claimants (nodes whose published
// claims hold the address) before everyone else, then by rank. The owner is the
// least key.
type key struct {
	unclaimed bool
	rank      rank
}

func (k key) less(o key) bool {
	if k.unclaimed != o.unclaimed {
		return !k.unclaimed
	}
	return k.rank.less(o.rank)
}
