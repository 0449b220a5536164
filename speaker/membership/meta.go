package membership

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"
)

// MaxMetaSize is the most metadata memberlist carries per member
// (memberlist.MetaMaxSize).
const MaxMetaSize = 512

// metaVersion is the format Encode writes. A decoder accepts higher versions
// and reads their version-1 fields, so later versions must only append.
const metaVersion = 1

const flagLeaving = 1 << 0

// Meta is what a speaker tells the others in its memberlist metadata.
type Meta struct {
	// Claims are the addresses the speaker announces (election.Claims).
	Claims []netip.Addr
	// Leaving is set by Leave just before the member leaves, so peers can tell
	// a planned leave from a failure.
	Leaving bool
}

// Encode returns m in at most limit bytes and how many of m.Claims, from the
// first, it holds: when they do not all fit, the first ones are kept (order
// them by importance). Addresses are stored sorted per family as
// variable-length deltas, so addresses from one pool range cost one or two
// bytes each: about 500 IPv4 or 250 IPv6 addresses of a dense range fit in
// MaxMetaSize, and at least 28 IPv6 (100 IPv4) addresses anywhere. Zones are
// dropped; invalid addresses and repeats are skipped. limit is raised to the
// 4 bytes an empty Meta needs.
func (m Meta) Encode(limit int) ([]byte, int) {
	fits := func(n int) bool { return len(encodeMeta(m.Leaving, m.Claims[:n])) <= limit }
	// The size never shrinks when an address is added (a delta split in two
	// takes at least as many bytes), so the largest prefix that fits is found
	// by bisection.
	n := sort.Search(len(m.Claims)+1, func(n int) bool { return !fits(n) }) - 1
	n = max(n, 0)
	return encodeMeta(m.Leaving, m.Claims[:n]), n
}

func encodeMeta(leaving bool, claims []netip.Addr) []byte {
	var v4, v6 []netip.Addr
	for _, a := range claims {
		a = a.WithZone("")
		switch {
		case !a.IsValid():
		case a.Is4():
			v4 = append(v4, a)
		default:
			v6 = append(v6, a)
		}
	}
	slices.SortFunc(v4, netip.Addr.Compare)
	slices.SortFunc(v6, netip.Addr.Compare)
	v4, v6 = slices.Compact(v4), slices.Compact(v6)

	var flags byte
	if leaving {
		flags |= flagLeaving
	}
	b := []byte{metaVersion, flags}
	b = binary.AppendUvarint(b, uint64(len(v4)))
	var prev uint64
	for _, a := range v4 {
		x := a.As4()
		v := uint64(binary.BigEndian.Uint32(x[:]))
		b = binary.AppendUvarint(b, v-prev)
		prev = v
	}
	b = binary.AppendUvarint(b, uint64(len(v6)))
	var prevHi, prevLo uint64
	for _, a := range v6 {
		x := a.As16()
		hi, lo := binary.BigEndian.Uint64(x[:8]), binary.BigEndian.Uint64(x[8:])
		b = binary.AppendUvarint(b, hi-prevHi)
		if hi == prevHi {
			b = binary.AppendUvarint(b, lo-prevLo)
		} else {
			b = binary.AppendUvarint(b, lo)
		}
		prevHi, prevLo = hi, lo
	}
	return b
}

var errShortMeta = errors.New("metadata ends early")

// DecodeMeta parses metadata written by Encode. Empty metadata (a member that
// set none) is an empty Meta. Version-1 metadata must be exactly what Encode
// writes; a higher version is read for its version-1 fields.
func DecodeMeta(b []byte) (Meta, error) {
	var m Meta
	if len(b) == 0 {
		return m, nil
	}
	if len(b) < 2 {
		return m, errShortMeta
	}
	version, flags := b[0], b[1]
	if version == 0 {
		return m, errors.New("metadata version 0")
	}
	if version == metaVersion && flags&^flagLeaving != 0 {
		return m, fmt.Errorf("metadata flags %#x unknown in version 1", flags)
	}
	m.Leaving = flags&flagLeaving != 0
	r := metaReader{b: b[2:]}

	n4 := r.count(1)
	var prev uint64
	for i := range n4 {
		d := r.uvarint()
		if i > 0 && d == 0 {
			return Meta{}, errors.New("IPv4 addresses repeated or out of order")
		}
		v := prev + d
		if v > 0xffffffff || v < prev {
			return Meta{}, errors.New("IPv4 address out of range")
		}
		var x [4]byte
		binary.BigEndian.PutUint32(x[:], uint32(v))
		m.Claims = append(m.Claims, netip.AddrFrom4(x))
		prev = v
	}
	n6 := r.count(2)
	var prevHi, prevLo uint64
	for i := range n6 {
		dhi := r.uvarint()
		hi := prevHi + dhi
		if hi < prevHi {
			return Meta{}, errors.New("IPv6 address out of range")
		}
		lo := r.uvarint()
		if dhi == 0 {
			if i > 0 && lo == 0 {
				return Meta{}, errors.New("IPv6 addresses repeated or out of order")
			}
			if prevLo+lo < prevLo {
				return Meta{}, errors.New("IPv6 address out of range")
			}
			lo += prevLo
		}
		var x [16]byte
		binary.BigEndian.PutUint64(x[:8], hi)
		binary.BigEndian.PutUint64(x[8:], lo)
		m.Claims = append(m.Claims, netip.AddrFrom16(x))
		prevHi, prevLo = hi, lo
	}
	if r.err != nil {
		return Meta{}, r.err
	}
	if version == metaVersion && len(r.b) > 0 {
		return Meta{}, fmt.Errorf("%d bytes after the version-1 metadata", len(r.b))
	}
	return m, nil
}

type metaReader struct {
	b   []byte
	err error
}

func (r *metaReader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errShortMeta
		if n < 0 {
			r.err = errors.New("metadata number overflows")
		}
		return 0
	}
	if n != len(binary.AppendUvarint(nil, v)) {
		r.err = errors.New("metadata number not minimally encoded")
		return 0
	}
	r.b = r.b[n:]
	return v
}

// count reads an element count and rejects counts the remaining bytes cannot
// hold (each element takes at least minBytes), so a hostile count never makes
// the decoder loop or allocate beyond its input.
func (r *metaReader) count(minBytes int) int {
	n := r.uvarint()
	if r.err == nil && n > uint64(len(r.b)/minBytes) {
		r.err = fmt.Errorf("metadata claims %d addresses in %d bytes", n, len(r.b))
		return 0
	}
	return int(n)
}
