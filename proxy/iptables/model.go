package iptables

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"
)

// Model is an in-memory iptables for one family that implements Interface, so
// the proxy can be run against it in unit tests, and that Tracer walks to tell
// where a packet goes. Restore applies input with --noflush semantics and
// refuses what the kernel refuses: a jump to a chain that does not exist,
// deleting a chain that is still referenced or not empty, a loop of jumps, and
// rules it does not understand. A table block that fails leaves the table as it
// was; blocks committed before it stay committed (as with iptables-restore).
//
// The zero value is not usable; call NewModel.
type Model struct {
	mu     sync.Mutex
	family Family
	tables map[Table]*table
	recent map[string]map[netip.Addr]time.Time

	restores     int
	restoreBytes int
}

type table struct {
	chains map[string]*chain
	refs   map[string]int // chain name -> number of rules jumping to it
}

type chain struct {
	name    string
	builtin bool
	policy  string
	rules   []*Rule
}

var builtinChains = map[Table][]string{
	TableFilter: {"INPUT", "FORWARD", "OUTPUT"},
	TableNAT:    {"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"},
	TableMangle: {"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"},
}

// NewModel returns an empty model: every table with only its built-in chains,
// policy ACCEPT.
func NewModel(family Family) *Model {
	m := &Model{family: family, tables: map[Table]*table{}, recent: map[string]map[netip.Addr]time.Time{}}
	for t, names := range builtinChains {
		tb := &table{chains: map[string]*chain{}, refs: map[string]int{}}
		for _, n := range names {
			tb.chains[n] = &chain{name: n, builtin: true, policy: "ACCEPT"}
		}
		m.tables[t] = tb
	}
	return m
}

// Family implements Interface.
func (m *Model) Family() Family { return m.family }

// RandomFully implements Interface; the model supports it.
func (m *Model) RandomFully(context.Context) bool { return true }

// Restores returns how many Restore calls succeeded and their total input size.
func (m *Model) Restores() (calls, bytes int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.restores, m.restoreBytes
}

// Restore implements Interface.
func (m *Model) Restore(_ context.Context, data []byte) error {
	blocks, err := ParseRestore(m.family, data)
	if err != nil {
		return fmt.Errorf("iptables-restore: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, b := range blocks {
		if err := m.applyBlock(b); err != nil {
			return fmt.Errorf("iptables-restore: %w", err)
		}
	}
	m.restores++
	m.restoreBytes += len(data)
	return nil
}

// tx is an open transaction on one table: chains are copied on first write and
// the originals kept so a failure can be undone.
type tx struct {
	t       *table
	saved   map[string]*chain // original chain (nil: did not exist)
	touched []string
}

func (x *tx) write(name string) *chain {
	c := x.t.chains[name]
	if _, ok := x.saved[name]; ok {
		return c
	}
	x.saved[name] = c
	x.touched = append(x.touched, name)
	if c == nil {
		return nil
	}
	cp := *c
	cp.rules = slices.Clone(c.rules)
	x.t.chains[name] = &cp
	return &cp
}

func (x *tx) addRefs(rules []*Rule, d int) {
	for _, r := range rules {
		if j := r.Jumps(); j != "" {
			x.t.refs[j] += d
			if x.t.refs[j] == 0 {
				delete(x.t.refs, j)
			}
		}
	}
}

func (x *tx) rollback() {
	for i := len(x.touched) - 1; i >= 0; i-- {
		name := x.touched[i]
		if cur := x.t.chains[name]; cur != nil {
			x.addRefs(cur.rules, -1)
		}
		old := x.saved[name]
		if old == nil {
			delete(x.t.chains, name)
			continue
		}
		x.addRefs(old.rules, +1)
		x.t.chains[name] = old
	}
}

func (m *Model) applyBlock(b Block) (err error) {
	t := m.tables[b.Table]
	x := &tx{t: t, saved: map[string]*chain{}}
	defer func() {
		if err != nil {
			x.rollback()
		}
	}()
	for _, op := range b.Ops {
		if err := m.apply(x, b.Table, op); err != nil {
			return fmt.Errorf("line %d: %w", op.Line, err)
		}
	}
	return checkLoops(t, x.touched)
}

func (m *Model) apply(x *tx, tname Table, op Op) error {
	t := x.t
	switch op.Kind {
	case "COMMIT":
		return nil
	case "chain", "-N":
		c := t.chains[op.Chain]
		if c != nil && c.builtin {
			if op.Kind == "-N" {
				return fmt.Errorf("chain %s already exists", op.Chain)
			}
			if op.Policy != "-" {
				x.write(op.Chain).policy = op.Policy
			}
			return nil
		}
		if isBuiltinName(op.Chain) {
			return fmt.Errorf("%s is not a built-in chain of table %s", op.Chain, tname)
		}
		if op.Kind == "chain" && op.Policy != "-" {
			return fmt.Errorf("user chain %s cannot have a policy", op.Chain)
		}
		if c != nil {
			if op.Kind == "-N" {
				return fmt.Errorf("chain %s already exists", op.Chain)
			}
			w := x.write(op.Chain)
			x.addRefs(w.rules, -1)
			w.rules = nil
			return nil
		}
		x.write(op.Chain)
		t.chains[op.Chain] = &chain{name: op.Chain}
		return nil
	case "-A", "-I":
		c := t.chains[op.Chain]
		if c == nil {
			return fmt.Errorf("chain %s does not exist", op.Chain)
		}
		if err := checkTarget(t, tname, op.Rule); err != nil {
			return err
		}
		w := x.write(op.Chain)
		if op.Kind == "-A" {
			w.rules = append(w.rules, op.Rule)
		} else {
			if op.Pos > len(w.rules)+1 {
				return fmt.Errorf("index of insertion too big")
			}
			w.rules = slices.Insert(w.rules, op.Pos-1, op.Rule)
		}
		x.addRefs([]*Rule{op.Rule}, +1)
		return nil
	case "-D":
		c := t.chains[op.Chain]
		if c == nil {
			return fmt.Errorf("chain %s does not exist", op.Chain)
		}
		i := op.Pos - 1
		if op.Rule != nil {
			i = slices.IndexFunc(c.rules, func(r *Rule) bool { return r.text == op.Rule.text })
		}
		if i < 0 || i >= len(c.rules) {
			return errors.New("bad rule (does a matching rule exist in that chain?)")
		}
		w := x.write(op.Chain)
		x.addRefs(w.rules[i:i+1], -1)
		w.rules = slices.Delete(w.rules, i, i+1)
		return nil
	case "-F":
		c := t.chains[op.Chain]
		if c == nil {
			return fmt.Errorf("chain %s does not exist", op.Chain)
		}
		w := x.write(op.Chain)
		x.addRefs(w.rules, -1)
		w.rules = nil
		return nil
	case "-X":
		c := t.chains[op.Chain]
		switch {
		case c == nil:
			return fmt.Errorf("chain %s does not exist", op.Chain)
		case c.builtin:
			return fmt.Errorf("cannot delete built-in chain %s", op.Chain)
		case len(c.rules) > 0:
			return fmt.Errorf("chain %s is not empty", op.Chain)
		case t.refs[op.Chain] > 0:
			return fmt.Errorf("chain %s is still referenced by %d rules (device or resource busy)", op.Chain, t.refs[op.Chain])
		}
		x.write(op.Chain)
		delete(t.chains, op.Chain)
		return nil
	case "-P":
		c := t.chains[op.Chain]
		if c == nil || !c.builtin {
			return fmt.Errorf("%s is not a built-in chain", op.Chain)
		}
		x.write(op.Chain).policy = op.Policy
		return nil
	}
	return fmt.Errorf("unsupported command %q", op.Kind)
}

func isBuiltinName(name string) bool {
	switch name {
	case "PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING":
		return true
	}
	return false
}

// targetTables says in which tables (and by that, which hooks) a built-in target
// is valid, as the kernel checks it.
var targetTables = map[string][]Table{
	"DNAT":       {TableNAT},
	"MASQUERADE": {TableNAT},
	"REJECT":     {TableFilter, TableMangle},
}

func checkTarget(t *table, tname Table, r *Rule) error {
	if ts, ok := targetTables[r.Target]; ok && !slices.Contains(ts, tname) {
		return fmt.Errorf("target %s is not valid in table %s", r.Target, tname)
	}
	j := r.Jumps()
	if j == "" {
		return nil
	}
	c := t.chains[j]
	if c == nil {
		return fmt.Errorf("chain '%s' does not exist", j)
	}
	if c.builtin {
		return fmt.Errorf("cannot jump to built-in chain %s", j)
	}
	return nil
}

// checkLoops refuses a jump loop. A new loop must go through a chain written in
// this transaction, so the search starts only from those.
func checkLoops(t *table, from []string) error {
	const (
		white = iota
		grey
		black
	)
	color := map[string]int{}
	var visit func(name string) error
	visit = func(name string) error {
		switch color[name] {
		case grey:
			return fmt.Errorf("jump loop through chain %s", name)
		case black:
			return nil
		}
		color[name] = grey
		if c := t.chains[name]; c != nil {
			for _, r := range c.rules {
				if j := r.Jumps(); j != "" {
					if err := visit(j); err != nil {
						return err
					}
				}
			}
		}
		color[name] = black
		return nil
	}
	for _, n := range from {
		if err := visit(n); err != nil {
			return err
		}
	}
	return nil
}

// Save implements Interface: the table in iptables-save format (built-in chains
// first, then user chains sorted by name; rules in order).
func (m *Model) Save(_ context.Context, tname Table) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.tables[tname]
	if !ok {
		return nil, fmt.Errorf("unknown table %q", tname)
	}
	var b strings.Builder
	b.WriteString("*" + string(tname) + "\n")
	names := m.chainNamesLocked(t)
	for _, n := range names {
		c := t.chains[n]
		p := "-"
		if c.builtin {
			p = c.policy
		}
		fmt.Fprintf(&b, ":%s %s [0:0]\n", n, p)
	}
	for _, n := range names {
		for _, r := range t.chains[n].rules {
			fmt.Fprintf(&b, "-A %s %s\n", n, r.text)
		}
	}
	b.WriteString("COMMIT\n")
	return []byte(b.String()), nil
}

func (m *Model) chainNamesLocked(t *table) []string {
	var names []string
	for n := range t.chains {
		names = append(names, n)
	}
	slices.SortFunc(names, func(a, b string) int {
		ca, cb := t.chains[a], t.chains[b]
		if ca.builtin != cb.builtin {
			if ca.builtin {
				return -1
			}
			return 1
		}
		return strings.Compare(a, b)
	})
	return names
}

// Chains returns the names of the chains of a table (built-in ones first).
func (m *Model) Chains(tname Table) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.chainNamesLocked(m.tables[tname])
}

// Rules returns the rules of a chain as iptables-save renders them (without
// "-A CHAIN"), or nil when the chain does not exist.
func (m *Model) Rules(tname Table, chainName string) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.tables[tname].chains[chainName]
	if c == nil {
		return nil
	}
	out := make([]string, len(c.rules))
	for i, r := range c.rules {
		out[i] = r.text
	}
	return out
}

// References returns how many rules jump or go to chainName.
func (m *Model) References(tname Table, chainName string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.tables[tname].refs[chainName]
}

// RuleCount returns the number of rules in a table.
func (m *Model) RuleCount(tname Table) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, c := range m.tables[tname].chains {
		n += len(c.rules)
	}
	return n
}

func (m *Model) parseOne(args []string) (*Rule, error) {
	r, err := ParseRule(m.family, args)
	if err != nil {
		return nil, fmt.Errorf("iptables: %w", err)
	}
	return r, nil
}

// EnsureRule implements Interface.
func (m *Model) EnsureRule(_ context.Context, tname Table, chainName string, args ...string) error {
	r, err := m.parseOne(args)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	t := m.tables[tname]
	c := t.chains[chainName]
	if c == nil {
		return fmt.Errorf("iptables: chain %s does not exist", chainName)
	}
	if slices.ContainsFunc(c.rules, func(x *Rule) bool { return x.text == r.text }) {
		return nil
	}
	x := &tx{t: t, saved: map[string]*chain{}}
	if err := m.apply(x, tname, Op{Kind: "-I", Chain: chainName, Pos: 1, Rule: r}); err != nil {
		x.rollback()
		return fmt.Errorf("iptables: %w", err)
	}
	if err := checkLoops(t, x.touched); err != nil {
		x.rollback()
		return fmt.Errorf("iptables: %w", err)
	}
	return nil
}

// HasRule implements Interface.
func (m *Model) HasRule(_ context.Context, tname Table, chainName string, args ...string) (bool, error) {
	r, err := m.parseOne(args)
	if err != nil {
		return false, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.tables[tname].chains[chainName]
	if c == nil {
		return false, nil
	}
	return slices.ContainsFunc(c.rules, func(x *Rule) bool { return x.text == r.text }), nil
}

// DeleteRule implements Interface.
func (m *Model) DeleteRule(_ context.Context, tname Table, chainName string, args ...string) error {
	r, err := m.parseOne(args)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	t := m.tables[tname]
	c := t.chains[chainName]
	if c == nil || !slices.ContainsFunc(c.rules, func(x *Rule) bool { return x.text == r.text }) {
		return nil
	}
	x := &tx{t: t, saved: map[string]*chain{}}
	return m.apply(x, tname, Op{Kind: "-D", Chain: chainName, Rule: r})
}

// FlushTable empties every chain of a table and deletes its user chains, as an
// administrator's "iptables -t TABLE -F; iptables -t TABLE -X" would.
func (m *Model) FlushTable(tname Table, deleteChains bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t := m.tables[tname]
	for n, c := range t.chains {
		if deleteChains && !c.builtin {
			delete(t.chains, n)
			continue
		}
		cp := *c
		cp.rules = nil
		t.chains[n] = &cp
	}
	t.refs = map[string]int{}
}

// RecordRecent adds src to the recent-module list name at time at, as a
// "-m recent --set --name name" rule would when a packet from src passes it.
func (m *Model) RecordRecent(name string, src netip.Addr, at time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.recent[name] == nil {
		m.recent[name] = map[netip.Addr]time.Time{}
	}
	m.recent[name][src] = at
}
