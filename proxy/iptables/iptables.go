package iptables

import "context"

// Family is an IP family: IPv4 rules go to iptables, IPv6 rules to ip6tables.
type Family int

const (
	// IPv4 is programmed with iptables, iptables-restore and iptables-save.
	IPv4 Family = 4
	// IPv6 is programmed with ip6tables, ip6tables-restore and ip6tables-save.
	IPv6 Family = 6
)

// String returns "IPv4" or "IPv6".
func (f Family) String() string {
	if f == IPv6 {
		return "IPv6"
	}
	return "IPv4"
}

// Table is an iptables table name.
type Table string

const (
	// TableNAT is the nat table (DNAT in PREROUTING/OUTPUT, masquerade in POSTROUTING).
	TableNAT Table = "nat"
	// TableFilter is the filter table (REJECT/DROP/ACCEPT in INPUT/FORWARD/OUTPUT).
	TableFilter Table = "filter"
	// TableMangle is the mangle table.
	TableMangle Table = "mangle"
)

// Interface is what the proxy needs from iptables for one IP family. Exec runs
// the real binaries; Model is the in-memory implementation for tests. Every
// method is safe for concurrent use.
type Interface interface {
	// Family is the IP family this instance programs.
	Family() Family
	// Restore applies iptables-restore input with --noflush semantics: a chain
	// declared with ":NAME - [0:0]" is created or flushed, chains not named are
	// left alone, and each table block is committed atomically.
	Restore(ctx context.Context, data []byte) error
	// Save returns the iptables-save text of one table.
	Save(ctx context.Context, table Table) ([]byte, error)
	// EnsureRule inserts the rule at the top of chain unless it exists already.
	EnsureRule(ctx context.Context, table Table, chain string, args ...string) error
	// HasRule reports whether the rule exists in chain (false when the chain
	// itself is missing).
	HasRule(ctx context.Context, table Table, chain string, args ...string) (bool, error)
	// DeleteRule deletes the rule from chain; a missing rule or chain is not an error.
	DeleteRule(ctx context.Context, table Table, chain string, args ...string) error
	// RandomFully reports whether MASQUERADE --random-fully is supported.
	RandomFully(ctx context.Context) bool
}
