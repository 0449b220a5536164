package iptables

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

func mustRestore(t *testing.T, m *Model, in string) {
	t.Helper()
	if err := m.Restore(context.Background(), []byte(in)); err != nil {
		t.Fatalf("restore:\n%s\n%v", in, err)
	}
}

func TestRestoreNoflushSemantics(t *testing.T) {
	m := NewModel(IPv4)
	mustRestore(t, m, `*nat
:A - [0:0]
:B - [0:0]
-A A -j B
-A B -j RETURN
-A PREROUTING -j A
COMMIT
`)
	// Declaring A flushes it; B (not declared) keeps its rule; PREROUTING
	// (built-in, declared) is not flushed.
	mustRestore(t, m, `*nat
:PREROUTING ACCEPT [0:0]
:A - [0:0]
-A A -d 192.0.2.1 -j B
COMMIT
`)
	if got := m.Rules(TableNAT, "A"); !slices.Equal(got, []string{"-d 192.0.2.1/32 -j B"}) {
		t.Errorf("A = %v", got)
	}
	if got := m.Rules(TableNAT, "B"); !slices.Equal(got, []string{"-j RETURN"}) {
		t.Errorf("B = %v", got)
	}
	if got := m.Rules(TableNAT, "PREROUTING"); !slices.Equal(got, []string{"-j A"}) {
		t.Errorf("PREROUTING = %v", got)
	}
	// -X deletes once nothing references the chain.
	mustRestore(t, m, "*nat\n:A - [0:0]\n:B - [0:0]\n-X B\nCOMMIT\n")
	if slices.Contains(m.Chains(TableNAT), "B") {
		t.Error("B not deleted")
	}
}

func TestRestoreRefusesWhatTheKernelRefuses(t *testing.T) {
	base := "*nat\n:A - [0:0]\n:B - [0:0]\n-A A -j B\n-A PREROUTING -j A\nCOMMIT\n"
	cases := []struct {
		name, in, errPart string
	}{
		{"jump to a missing chain", "*nat\n:C - [0:0]\n-A C -j MISSING\nCOMMIT\n", "does not exist"},
		{"delete a referenced chain", "*nat\n:B - [0:0]\n-X B\nCOMMIT\n", "referenced"},
		{"delete a chain with rules", "*nat\n-X A\nCOMMIT\n", "not empty"},
		{"delete a built-in chain", "*nat\n-X PREROUTING\nCOMMIT\n", "built-in"},
		{"a jump loop", "*nat\n-A B -j A\nCOMMIT\n", "loop"},
		{"append to a missing chain", "*nat\n-A NOPE -j RETURN\nCOMMIT\n", "does not exist"},
		{"DNAT in the filter table", "*filter\n:F - [0:0]\n-A F -p tcp -j DNAT --to-destination 192.0.2.1:80\nCOMMIT\n", "not valid"},
		{"missing COMMIT", "*nat\n:C - [0:0]\n", "no COMMIT"},
		{"an IPv6 address in IPv4", "*nat\n:C - [0:0]\n-A C -d 2001:db8::1 -j RETURN\nCOMMIT\n", "not IPv4"},
		{"an unknown match", "*nat\n:C - [0:0]\n-A C -m quota --quota 5 -j RETURN\nCOMMIT\n", "unsupported match"},
		{"--dport without a protocol", "*nat\n:C - [0:0]\n-A C --dport 80 -j RETURN\nCOMMIT\n", "needs -p"},
		{"a delete of a missing rule", "*nat\n-D A -j RETURN\nCOMMIT\n", "bad rule"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := NewModel(IPv4)
			mustRestore(t, m, base)
			before, _ := m.Save(context.Background(), TableNAT)
			err := m.Restore(context.Background(), []byte(c.in))
			if err == nil || !strings.Contains(err.Error(), c.errPart) {
				t.Fatalf("err = %v, want one mentioning %q", err, c.errPart)
			}
			after, _ := m.Save(context.Background(), TableNAT)
			if string(before) != string(after) {
				t.Errorf("a failed restore changed the table:\nbefore\n%s\nafter\n%s", before, after)
			}
		})
	}
}

func TestFailedBlockIsUndoneEarlierBlocksStay(t *testing.T) {
	m := NewModel(IPv4)
	in := "*filter\n:F - [0:0]\n-A F -j ACCEPT\nCOMMIT\n*nat\n:N - [0:0]\n-A N -j RETURN\n-A N -j NOPE\nCOMMIT\n"
	if err := m.Restore(context.Background(), []byte(in)); err == nil {
		t.Fatal("no error")
	}
	if !slices.Contains(m.Chains(TableFilter), "F") {
		t.Error("the committed filter block was lost")
	}
	if slices.Contains(m.Chains(TableNAT), "N") {
		t.Error("the failed nat block left chain N")
	}
}

func TestEnsureHasDeleteRule(t *testing.T) {
	ctx := context.Background()
	m := NewModel(IPv6)
	mustRestore(t, m, "*nat\n:X - [0:0]\nCOMMIT\n")
	args := []string{"-m", "comment", "--comment", "two words", "-j", "X"}
	for range 2 {
		if err := m.EnsureRule(ctx, TableNAT, "OUTPUT", args...); err != nil {
			t.Fatal(err)
		}
	}
	if got := m.Rules(TableNAT, "OUTPUT"); len(got) != 1 {
		t.Fatalf("EnsureRule twice: %v", got)
	}
	if ok, _ := m.HasRule(ctx, TableNAT, "OUTPUT", args...); !ok {
		t.Error("HasRule: false")
	}
	if ok, _ := m.HasRule(ctx, TableNAT, "NOCHAIN", args...); ok {
		t.Error("HasRule in a missing chain: true")
	}
	if err := m.EnsureRule(ctx, TableNAT, "OUTPUT", "-j", "MISSING"); err == nil {
		t.Error("EnsureRule with a missing target: no error")
	}
	if err := m.DeleteRule(ctx, TableNAT, "OUTPUT", args...); err != nil {
		t.Fatal(err)
	}
	if err := m.DeleteRule(ctx, TableNAT, "OUTPUT", args...); err != nil {
		t.Errorf("deleting a missing rule: %v", err)
	}
	if m.References(TableNAT, "X") != 0 {
		t.Error("reference count not dropped")
	}
}

// TestSaveRestoresItself: Save output is valid restore input that rebuilds the
// same table (Cleanup relies on deleting rules by their saved text).
func TestSaveRestoresItself(t *testing.T) {
	m := NewModel(IPv4)
	mustRestore(t, m, `*nat
:S - [0:0]
:E - [0:0]
-A S ! -s 198.18.0.0/16 -d 198.19.0.10/32 -p tcp -m tcp --dport 80 -j MARK --or-mark 0x4000
-A S -m comment --comment "a \"quoted\" comment" -m statistic --mode random --probability 0.3333333333 -g E
-A S -m recent --rcheck --seconds 10 --reap --name E --rsource -j E
-A S -p tcp -m recent --update --seconds 10 --reap --name E --rsource -j DNAT --to-destination 198.18.1.10:80
-A POSTROUTING -m mark ! --mark 0x4000/0x4000 -m conntrack --ctstate DNAT -g E
-A E -s 198.18.1.10 -m addrtype --src-type LOCAL -j RETURN
-A E -m recent --set --name E --rsource -p udp -j DNAT --to-destination 198.18.1.10:53
-A POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A POSTROUTING -j MASQUERADE --random-fully
COMMIT
`)
	save, _ := m.Save(context.Background(), TableNAT)
	m2 := NewModel(IPv4)
	mustRestore(t, m2, string(save))
	save2, _ := m2.Save(context.Background(), TableNAT)
	if string(save) != string(save2) {
		t.Errorf("save does not round-trip:\n%s\n---\n%s", save, save2)
	}
}

func TestTracerPaths(t *testing.T) {
	m := NewModel(IPv4)
	mustRestore(t, m, `*nat
:SVC - [0:0]
:SEP1 - [0:0]
:SEP2 - [0:0]
:MASQ - [0:0]
:POST - [0:0]
-A PREROUTING -d 198.19.0.10 -p tcp -m tcp --dport 80 -j SVC
-A OUTPUT -d 198.19.0.10 -p tcp -m tcp --dport 80 -j SVC
-A SVC -m statistic --mode random --probability 0.5 -j SEP1
-A SVC -j SEP2
-A SEP1 -s 198.18.1.1 -j MASQ
-A SEP1 -p tcp -j DNAT --to-destination 198.18.1.1:8080
-A SEP2 -p tcp -j DNAT --to-destination 198.18.1.2:8080
-A MASQ -j MARK --or-mark 0x4000
-A POSTROUTING -j POST
-A POST -m mark ! --mark 0x4000/0x4000 -j RETURN
-A POST -j MASQUERADE
COMMIT
*filter
:F - [0:0]
-A FORWARD -j F
-A F -d 198.19.0.11 -j REJECT
COMMIT
`)
	tr := Tracer{Model: m, LocalAddrs: []netip.Addr{netip.MustParseAddr("192.0.2.11")}}
	outs, err := tr.Trace(Packet{Src: netip.MustParseAddr("198.18.1.1"), Dst: netip.MustParseAddr("198.19.0.10"), DstPort: 80, Protocol: "tcp", InInterface: "veth0"})
	if err != nil {
		t.Fatal(err)
	}
	if len(outs) != 2 {
		t.Fatalf("outcomes: %+v", outs)
	}
	for _, o := range outs {
		hairpin := o.Dst.Addr() == netip.MustParseAddr("198.18.1.1")
		if o.Verdict != Accept || !o.DNAT || o.Masquerade != hairpin || o.Probability != 0.5 {
			t.Errorf("outcome %+v", o)
		}
	}
	outs, _ = tr.Trace(Packet{Src: netip.MustParseAddr("198.18.1.9"), Dst: netip.MustParseAddr("198.19.0.11"), DstPort: 80, Protocol: "tcp", InInterface: "veth0"})
	if len(outs) != 1 || outs[0].Verdict != Reject {
		t.Errorf("to the rejected address: %+v", outs)
	}
	outs, _ = tr.Trace(Packet{Src: netip.MustParseAddr("198.51.100.1"), Dst: netip.MustParseAddr("192.0.2.11"), DstPort: 22, Protocol: "tcp", InInterface: "eth0"})
	if len(outs) != 1 || !outs[0].Local || outs[0].DNAT {
		t.Errorf("to the node: %+v", outs)
	}
}

// TestTracerRecentUpdateAndDNATState: a recent --update match that matches
// records the client again; conntrack --ctstate DNAT in POSTROUTING matches
// only connections whose destination was rewritten.
func TestTracerRecentUpdateAndDNATState(t *testing.T) {
	m := NewModel(IPv4)
	mustRestore(t, m, `*nat
:SVC - [0:0]
:HP - [0:0]
-A PREROUTING -d 198.19.0.10/32 -p tcp -m tcp --dport 80 -j SVC
-A SVC -p tcp -m recent --update --seconds 10 --reap --name L1 --rsource -j DNAT --to-destination 198.18.1.1:8080
-A SVC -p tcp -m statistic --mode random --probability 0.5 -m recent --set --name L1 --rsource -j DNAT --to-destination 198.18.1.1:8080
-A SVC -p tcp -m recent --set --name L2 --rsource -j DNAT --to-destination 198.18.1.2:8080
-A POSTROUTING -m conntrack --ctstate DNAT -g HP
-A HP -s 198.18.1.1/32 -d 198.18.1.1/32 -j MASQUERADE
COMMIT
`)
	client := netip.MustParseAddr("198.18.1.1")
	now := time.Now()
	tr := Tracer{Model: m, Now: now}
	p := Packet{Src: client, Dst: netip.MustParseAddr("198.19.0.10"), DstPort: 80, Protocol: "tcp", InInterface: "veth0"}
	outs, err := tr.Trace(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(outs) != 2 {
		t.Fatalf("a new client: %+v, want two random outcomes", outs)
	}
	for _, o := range outs {
		self := o.Dst.Addr() == client
		if o.Masquerade != self || o.Probability != 0.5 {
			t.Errorf("new client to %v: masquerade %v probability %v", o.Dst, o.Masquerade, o.Probability)
		}
	}
	m.RecordRecent("L1", client, now.Add(-5*time.Second))
	outs, _ = tr.Trace(p)
	if len(outs) != 1 || outs[0].Dst.Addr() != client || !slices.Equal(outs[0].Recent, []string{"L1"}) {
		t.Errorf("a known client: %+v, want the update rule (recording L1 again)", outs)
	}
	outs, _ = tr.Trace(Packet{Src: client, Dst: netip.MustParseAddr("198.18.1.1"), DstPort: 8080, Protocol: "tcp", InInterface: "veth0"})
	if len(outs) != 1 || outs[0].Masquerade || outs[0].DNAT {
		t.Errorf("a connection that was not DNATed: %+v, want no masquerade", outs)
	}
}

func TestParseRuleErrors(t *testing.T) {
	bad := [][]string{
		{"-j"},
		{"-p", "tcp", "-m", "tcp", "--dport", "99999", "-j", "ACCEPT"},
		{"-p", "tcp", "--dport", "5:1", "-j", "ACCEPT"},
		{"!", "!", "-s", "192.0.2.1", "-j", "ACCEPT"},
		{"-m", "statistic", "--mode", "random", "-j", "ACCEPT"},
		{"-m", "statistic", "--mode", "random", "--probability", "2", "-j", "ACCEPT"},
		{"-m", "recent", "--set", "-j", "ACCEPT"},
		{"-m", "recent", "--set", "--update", "--name", "L", "-j", "ACCEPT"},
		{"-m", "recent", "--set", "--seconds", "5", "--name", "L", "-j", "ACCEPT"},
		{"-m", "recent", "--update", "--reap", "--name", "L", "-j", "ACCEPT"},
		{"-j", "MARK"},
		{"-j", "DNAT"},
		{"-g", "ACCEPT"},
		{"-s", "192.0.2.1"},
		{"-m", "mark", "--mark", "zz", "-j", "ACCEPT"},
		{"-j", "ACCEPT", "--random-fully"},
	}
	for _, b := range bad {
		if r, err := ParseRule(IPv4, b); err == nil {
			t.Errorf("%q parsed as %q", b, r)
		}
	}
}

func TestTokenize(t *testing.T) {
	got, err := Tokenize(`-A X -m comment --comment "a \"b\" c" -j Y`)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"-A", "X", "-m", "comment", "--comment", `a "b" c`, "-j", "Y"}
	if !slices.Equal(got, want) {
		t.Errorf("got %q", got)
	}
	if _, err := Tokenize(`-A X "open`); err == nil {
		t.Error("unterminated quote: no error")
	}
}

func TestAtLeast(t *testing.T) {
	for _, c := range []struct {
		s    string
		want bool
	}{
		{"iptables v1.8.9 (nf_tables)", true},
		{"iptables v1.6.2", true},
		{"iptables v1.6.1", false},
		{"iptables v1.4.21", false},
		{"garbage", false},
	} {
		if got := atLeast(c.s, 1, 6, 2); got != c.want {
			t.Errorf("atLeast(%q) = %v", c.s, got)
		}
	}
}
