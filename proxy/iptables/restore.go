package iptables

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Op is one parsed line of iptables-restore input.
type Op struct {
	// Line is the 1-based line number in the input.
	Line int
	// Kind is one of "chain" (":NAME POLICY [c]"), "-A", "-I", "-D", "-F", "-N",
	// "-X", "-P" and "COMMIT".
	Kind string
	// Chain is the chain the line names.
	Chain string
	// Policy is the policy of a ":" line or of -P ("-" for user chains).
	Policy string
	// Pos is the 1-based position of -I (1 when omitted) or -D by number (0: by rule).
	Pos int
	// Rule is the parsed rule of -A, -I and -D by rule.
	Rule *Rule
}

// Block is the ops of one "*table" ... "COMMIT" section.
type Block struct {
	Table Table
	Ops   []Op
}

// ParseRestore parses iptables-restore input for family. Rules are parsed with
// ParseRule, so unsupported options are errors. Errors name the line.
func ParseRestore(family Family, data []byte) ([]Block, error) {
	var blocks []Block
	var cur *Block
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		lineErr := func(err error) error { return fmt.Errorf("line %d: %w", n, err) }
		switch {
		case line[0] == '*':
			if cur != nil {
				return nil, lineErr(errors.New("table started before COMMIT of the previous one"))
			}
			t := Table(line[1:])
			switch t {
			case TableNAT, TableFilter, TableMangle:
			default:
				return nil, lineErr(fmt.Errorf("unsupported table %q", line[1:]))
			}
			blocks = append(blocks, Block{Table: t})
			cur = &blocks[len(blocks)-1]
			continue
		case cur == nil:
			return nil, lineErr(errors.New("line outside of a table"))
		case line == "COMMIT":
			cur.Ops = append(cur.Ops, Op{Line: n, Kind: "COMMIT"})
			cur = nil
			continue
		case line[0] == ':':
			f := strings.Fields(line[1:])
			if len(f) < 2 || len(f) > 3 {
				return nil, lineErr(fmt.Errorf("bad chain line %q", line))
			}
			if err := checkChainName(f[0]); err != nil {
				return nil, lineErr(err)
			}
			switch f[1] {
			case "-", "ACCEPT", "DROP":
			default:
				return nil, lineErr(fmt.Errorf("bad policy %q", f[1]))
			}
			cur.Ops = append(cur.Ops, Op{Line: n, Kind: "chain", Chain: f[0], Policy: f[1]})
			continue
		}
		toks, err := Tokenize(line)
		if err != nil {
			return nil, lineErr(err)
		}
		if len(toks) < 1 {
			return nil, lineErr(errors.New("empty command"))
		}
		op := Op{Line: n, Kind: toks[0]}
		args := toks[1:]
		switch op.Kind {
		case "-A", "-I", "-D":
			if len(args) < 1 {
				return nil, lineErr(fmt.Errorf("%s needs a chain", op.Kind))
			}
			op.Chain, args = args[0], args[1:]
			if op.Kind == "-I" {
				op.Pos = 1
				if len(args) > 0 {
					if p, err := strconv.Atoi(args[0]); err == nil {
						if p < 1 {
							return nil, lineErr(fmt.Errorf("bad rule position %d", p))
						}
						op.Pos, args = p, args[1:]
					}
				}
			}
			if op.Kind == "-D" && len(args) == 1 {
				if p, err := strconv.Atoi(args[0]); err == nil {
					if p < 1 {
						return nil, lineErr(fmt.Errorf("bad rule number %d", p))
					}
					op.Pos = p
					break
				}
			}
			r, err := ParseRule(family, args)
			if err != nil {
				return nil, lineErr(err)
			}
			op.Rule = r
		case "-F", "-N", "-X":
			if len(args) != 1 {
				return nil, lineErr(fmt.Errorf("%s needs exactly one chain", op.Kind))
			}
			op.Chain = args[0]
		case "-P":
			if len(args) != 2 || (args[1] != "ACCEPT" && args[1] != "DROP") {
				return nil, lineErr(errors.New("-P needs a chain and ACCEPT or DROP"))
			}
			op.Chain, op.Policy = args[0], args[1]
		default:
			return nil, lineErr(fmt.Errorf("unsupported command %q", op.Kind))
		}
		if err := checkChainName(op.Chain); err != nil {
			return nil, lineErr(err)
		}
		cur.Ops = append(cur.Ops, op)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("line %d: %w", n+1, err)
	}
	if cur != nil {
		return nil, fmt.Errorf("table %s has no COMMIT", cur.Table)
	}
	return blocks, nil
}

func checkChainName(s string) error {
	if s == "" || len(s) > 28 || s[0] == '-' || s[0] == '!' || strings.ContainsAny(s, " \t\"'") {
		return fmt.Errorf("invalid chain name %q", s)
	}
	return nil
}

// Tokenize splits one restore line into words the way iptables-restore does:
// on blanks, with double-quoted strings (backslash escapes inside) as one word.
func Tokenize(line string) ([]string, error) {
	var out []string
	var b strings.Builder
	inWord, inQuote := false, false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case inQuote && c == '\\' && i+1 < len(line):
			i++
			b.WriteByte(line[i])
		case inQuote && c == '"':
			inQuote = false
		case inQuote:
			b.WriteByte(c)
		case c == '"':
			inQuote, inWord = true, true
		case c == ' ' || c == '\t':
			if inWord {
				out = append(out, b.String())
				b.Reset()
				inWord = false
			}
		default:
			inWord = true
			b.WriteByte(c)
		}
	}
	if inQuote {
		return nil, errors.New("unterminated quote")
	}
	if inWord {
		out = append(out, b.String())
	}
	return out, nil
}
