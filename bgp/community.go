package bgp

import (
	"fmt"
	"strconv"
	"strings"
)

// Community is a BGP community (RFC 1997): 32 bits, written "ASN:value" with
// two 16-bit halves, or by name for the well-known ones.
type Community uint32

// Well-known communities that ParseCommunity accepts by name.
const (
	CommunityGracefulShutdown  Community = 0xFFFF0000 // RFC 8326
	CommunityAcceptOwn         Community = 0xFFFF0001 // RFC 7611
	CommunityLLGRStale         Community = 0xFFFF0006 // RFC 9494
	CommunityNoLLGR            Community = 0xFFFF0007 // RFC 9494
	CommunityBlackhole         Community = 0xFFFF029A // RFC 7999
	CommunityNoExport          Community = 0xFFFFFF01 // RFC 1997
	CommunityNoAdvertise       Community = 0xFFFFFF02 // RFC 1997
	CommunityNoExportSubconfed Community = 0xFFFFFF03 // RFC 1997, also called local-AS
	CommunityNoPeer            Community = 0xFFFFFF04 // RFC 3765
)

// communityNames maps the accepted names (lower case) to values; the first
// name listed for a value is the one String prints.
var communityNames = []struct {
	name string
	c    Community
}{
	{"graceful-shutdown", CommunityGracefulShutdown},
	{"accept-own", CommunityAcceptOwn},
	{"llgr-stale", CommunityLLGRStale},
	{"no-llgr", CommunityNoLLGR},
	{"blackhole", CommunityBlackhole},
	{"no-export", CommunityNoExport},
	{"no-advertise", CommunityNoAdvertise},
	{"no-export-subconfed", CommunityNoExportSubconfed},
	{"local-as", CommunityNoExportSubconfed},
	{"no-peer", CommunityNoPeer},
}

// ParseCommunity parses "ASN:value" (two decimal numbers of 0-65535) or the
// name of a well-known community (case-insensitive): graceful-shutdown,
// accept-own, llgr-stale, no-llgr, blackhole, no-export, no-advertise,
// no-export-subconfed (or local-AS), no-peer. Surrounding spaces are ignored.
func ParseCommunity(s string) (Community, error) {
	t := strings.TrimSpace(s)
	for _, n := range communityNames {
		if strings.EqualFold(t, n.name) {
			return n.c, nil
		}
	}
	hi, lo, ok := strings.Cut(t, ":")
	if !ok {
		return 0, fmt.Errorf("community %q: want ASN:value (e.g. 65000:100) or a well-known name such as no-export", s)
	}
	a, err := parseDecimal(hi, 16)
	if err != nil {
		return 0, fmt.Errorf("community %q: ASN: %w", s, err)
	}
	v, err := parseDecimal(lo, 16)
	if err != nil {
		return 0, fmt.Errorf("community %q: value: %w", s, err)
	}
	return Community(a<<16 | v), nil
}

// String returns the well-known name of c, or "ASN:value".
func (c Community) String() string {
	for _, n := range communityNames {
		if n.c == c {
			return n.name
		}
	}
	return fmt.Sprintf("%d:%d", uint32(c)>>16, uint32(c)&0xffff)
}

// MarshalText implements encoding.TextMarshaler with String's format.
func (c Community) MarshalText() ([]byte, error) { return []byte(c.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler with ParseCommunity.
func (c *Community) UnmarshalText(b []byte) error {
	v, err := ParseCommunity(string(b))
	if err != nil {
		return err
	}
	*c = v
	return nil
}

// LargeCommunity is a BGP large community (RFC 8092), written
// "global:local1:local2" with three 32-bit decimal numbers.
type LargeCommunity struct {
	GlobalAdmin, LocalData1, LocalData2 uint32
}

// ParseLargeCommunity parses "global:local1:local2", three decimal numbers of
// 0-4294967295 (e.g. "64600:1:2"). Surrounding spaces are ignored.
func ParseLargeCommunity(s string) (LargeCommunity, error) {
	parts := strings.Split(strings.TrimSpace(s), ":")
	if len(parts) != 3 {
		return LargeCommunity{}, fmt.Errorf("large community %q: want global:local1:local2 (e.g. 64600:1:2)", s)
	}
	var v [3]uint32
	for i, p := range parts {
		n, err := parseDecimal(p, 32)
		if err != nil {
			return LargeCommunity{}, fmt.Errorf("large community %q: part %d: %w", s, i+1, err)
		}
		v[i] = n
	}
	return LargeCommunity{v[0], v[1], v[2]}, nil
}

// String returns "global:local1:local2".
func (c LargeCommunity) String() string {
	return fmt.Sprintf("%d:%d:%d", c.GlobalAdmin, c.LocalData1, c.LocalData2)
}

// MarshalText implements encoding.TextMarshaler with String's format.
func (c LargeCommunity) MarshalText() ([]byte, error) { return []byte(c.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler with ParseLargeCommunity.
func (c *LargeCommunity) UnmarshalText(b []byte) error {
	v, err := ParseLargeCommunity(string(b))
	if err != nil {
		return err
	}
	*c = v
	return nil
}

// compare orders large communities numerically, field by field.
func (c LargeCommunity) compare(o LargeCommunity) int {
	for _, d := range [][2]uint32{{c.GlobalAdmin, o.GlobalAdmin}, {c.LocalData1, o.LocalData1}, {c.LocalData2, o.LocalData2}} {
		if d[0] != d[1] {
			if d[0] < d[1] {
				return -1
			}
			return 1
		}
	}
	return 0
}

// parseDecimal parses an unsigned decimal of at most bits bits: digits only,
// no sign, no spaces, no base prefix.
func parseDecimal(s string, bits int) (uint32, error) {
	if s == "" {
		return 0, fmt.Errorf("empty number")
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return 0, fmt.Errorf("%q is not a decimal number", s)
		}
	}
	n, err := strconv.ParseUint(s, 10, bits)
	if err != nil {
		return 0, fmt.Errorf("%q does not fit %d bits", s, bits)
	}
	return uint32(n), nil
}
