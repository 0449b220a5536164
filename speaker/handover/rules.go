package handover

import (
	"bufio"
	"bytes"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"time"

	"github.com/ironlb/ironlb/proxy/iptables"
)

// Chain is the chain this package makes in the mangle, nat and filter tables
// (the proxy package's Cleanup also removes its nat and filter parts, since
// it starts with IRONLB-).
const Chain = "IRONLB-HANDOVER"

// jump is a rule in a built-in chain that sends packets to Chain.
type jump struct {
	table iptables.Table
	chain string
	// first: the rule must be the chain's first (nat PREROUTING: before
	// kube-proxy's KUBE-SERVICES and the proxy's IRONLB-SERVICES, which would
	// DNAT the packet). Otherwise it is appended.
	first bool
}

var jumps = []jump{
	{iptables.TableMangle, "PREROUTING", false},
	{iptables.TableNAT, "PREROUTING", true},
	// FORWARD: accept the forwarded packets before anything drops them: a
	// FORWARD policy DROP (Docker sets it), or kube-proxy's drop of conntrack
	// INVALID (this node sees one direction of the connection). Nothing is
	// bypassed: the previous owner, which receives them, applies
	// loadBalancerSourceRanges to connections it does not know.
	{iptables.TableFilter, "FORWARD", true},
}

func jumpArgs() []string {
	return []string{"-m", "comment", "--comment", "ironlb L2 handover forwarding", "-j", Chain}
}

// markArg is "0x1000/0x1000" for bit 12.
func markArg(bit int) string {
	m := uint32(1) << uint(bit)
	return fmt.Sprintf("%#x/%#x", m, m)
}

// staticRules is the restore input of every chain: the mangle chain with the
// rules of fwds (forwardRules), and the parts that do not depend on the
// addresses: a packet whose connection carries the mark gets it (mangle),
// skips every DNAT (nat: ACCEPT ends the nat table for the packet) and is
// accepted for forwarding (filter).
//
// The ICMP redirect the kernel sends the client for the first forwarded
// packets (they leave by the link they came in on; at most a few per client,
// rate-limited) is left alone: a client reaches the address on-link, and
// Linux honours a redirect only from the gateway of its current route, so
// it is ignored (TestRealHandoverKeepsConnections: the client's new
// connections keep going to the new owner). Suppressing it would take a
// node-wide sysctl (send_redirects is or-ed with "all").
func staticRules(fam iptables.Family, bit int, fwds []Forward) []byte {
	var b strings.Builder
	b.WriteString(forwardRules(fam, bit, fwds))
	mark := markArg(bit)
	fmt.Fprintf(&b, "*nat\n:%s - [0:0]\n-A %s -m mark --mark %s -m comment --comment \"handed over: the previous owner forwards it\" -j ACCEPT\nCOMMIT\n", Chain, Chain, mark)
	fmt.Fprintf(&b, "*filter\n:%s - [0:0]\n-A %s -m mark --mark %s -j ACCEPT\nCOMMIT\n", Chain, Chain, mark)
	return []byte(b.String())
}

// forwardRules is the mangle table's restore input for the forwards of one
// family: the first packet of a TCP connection this node does not know
// (conntrack NEW without SYN: picked up mid-stream) to a forwarded address,
// until the forward's end (kernelStop), marks its connection (its comment
// records the forward, so that the next speaker process finds it:
// parseForwards); every packet of a marked connection gets the packet mark,
// which selects the routing table with the route to the previous owner.
func forwardRules(fam iptables.Family, bit int, fwds []Forward) string {
	var b strings.Builder
	mark := markArg(bit)
	fmt.Fprintf(&b, "*mangle\n:%s - [0:0]\n", Chain)
	for _, f := range fwds {
		if f.VIP.Is4() != (fam == iptables.IPv4) {
			continue
		}
		fmt.Fprintf(&b, "-A %s -d %s -p tcp ! --syn -m conntrack --ctstate NEW -m time --datestop %s -m comment --comment \"handed over from %s until %s\" -j CONNMARK --set-xmark %s\n",
			Chain, netip.PrefixFrom(f.VIP, f.VIP.BitLen()), kernelStop(f.Until), f.Via, f.Until.UTC().Format(time.RFC3339), mark)
	}
	fmt.Fprintf(&b, "-A %s -m connmark --mark %s -j MARK --set-xmark %s\nCOMMIT\n", Chain, mark, mark)
	return b.String()
}

// kernelStop is until as the time match's --datestop (UTC, whole seconds),
// rounded up so that the kernel never ends a window before the process does:
// the process ends it on time, and the kernel ends it by itself when no
// speaker process is left to (the speaker was removed, not restarted).
func kernelStop(until time.Time) string {
	u := until.UTC()
	if t := u.Truncate(time.Second); t.Before(u) {
		u = t.Add(time.Second)
	}
	return u.Format("2006-01-02T15:04:05")
}

// forwardRE matches a per-address rule of the mangle chain as iptables-save
// writes it.
var forwardRE = regexp.MustCompile(`^-A ` + Chain + ` -d (\S+) .*--comment "handed over from (\S+) until (\S+)"`)

// parseForwards reads the forwards an earlier process left in the mangle
// chain from iptables-save output. Lines it cannot read are skipped: a
// forward lost this way ends at once instead of at its window's end.
func parseForwards(save []byte) []Forward {
	var out []Forward
	sc := bufio.NewScanner(bytes.NewReader(save))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		m := forwardRE.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		p, err1 := netip.ParsePrefix(m[1])
		via, err2 := netip.ParseAddr(m[2])
		until, err3 := time.Parse(time.RFC3339, m[3])
		if err1 != nil || err2 != nil || err3 != nil || !p.IsSingleIP() || p.Addr().Is4() != via.Is4() || p.Addr() == via {
			continue
		}
		out = append(out, Forward{VIP: p.Addr(), Via: via, Until: until})
	}
	return out
}
