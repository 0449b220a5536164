// Package iptables is what the proxy needs from iptables, in two
// implementations of Interface:
//
//   - Exec runs the system's iptables, iptables-restore and iptables-save (or
//     the ip6tables ones), optionally under a command prefix such as
//     "ip netns exec NAME".
//   - Model is an in-memory iptables for tests. Restore parses
//     iptables-restore input (ParseRestore, ParseRule) and applies it with
//     --noflush semantics: a declared chain is created or flushed, chains not
//     named are untouched, -X deletes. Like the kernel it refuses a jump to a
//     missing chain, deleting a chain that is referenced or not empty, jump
//     loops, and targets in the wrong table; a failing table block leaves the
//     table as it was. Rules it does not understand are errors, never guesses.
//
// Tracer walks a Model with the first packet of a connection (source,
// destination, protocol, port, and whether it comes from a local process or
// an interface) through nat PREROUTING or OUTPUT, filter INPUT, FORWARD or
// OUTPUT, and nat POSTROUTING, and returns every possible Outcome: the
// verdict (ACCEPT, DROP, REJECT), the destination after DNAT, whether the
// source is masqueraded, the probability of the path (random balancing
// branches), the recent-module lists it records the client in (--set, or
// --update that matched), and how many rules it evaluated. conntrack
// --ctstate DNAT matches in POSTROUTING a packet whose destination was
// rewritten.
//
//	m := iptables.NewModel(iptables.IPv4)
//	err := m.Restore(ctx, input)
//	tr := iptables.Tracer{Model: m, LocalAddrs: nodeAddrs}
//	outs, err := tr.Trace(iptables.Packet{Src: pod, Dst: clusterIP, Protocol: "tcp", DstPort: 80, InInterface: "veth0"})
//
// Costs: Restore is linear in its input plus, for the chains it writes, the
// chains reachable from them (the loop check); Trace is linear in the rules
// on its paths times the number of random branches.
package iptables
