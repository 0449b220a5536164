package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/ironlb/ironlb/proxy/iptables"
)

// Cleanup removes every chain whose name starts with IRONLB- from the nat and
// filter tables, and every rule elsewhere that jumps to one, in one
// iptables-restore per family. Other rules and chains are left alone. It is
// what "ironlb-speaker --cleanup" runs, and safe to run when nothing is there.
func Cleanup(ctx context.Context, ipts ...iptables.Interface) error {
	var errs []error
	for _, ipt := range ipts {
		var in bytes.Buffer
		for _, t := range []iptables.Table{iptables.TableFilter, iptables.TableNAT} {
			save, err := ipt.Save(ctx, t)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s save %s: %w", ipt.Family(), t, err))
				continue
			}
			cleanupInput(&in, t, save)
		}
		if in.Len() == 0 {
			continue
		}
		if err := ipt.Restore(ctx, in.Bytes()); err != nil {
			errs = append(errs, fmt.Errorf("%s cleanup: %w", ipt.Family(), err))
		}
	}
	return errors.Join(errs...)
}

// cleanupInput writes the restore block that removes ironlb's chains from one
// table, given the table's iptables-save text: rules in other chains that
// jump to IRONLB-* are deleted, IRONLB-* chains flushed, then deleted.
func cleanupInput(out *bytes.Buffer, t iptables.Table, save []byte) {
	var decl, dels, xs []string
	sc := bufio.NewScanner(bytes.NewReader(save))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, ":"+chainPrefix):
			name, _, _ := strings.Cut(line[1:], " ")
			decl = append(decl, ":"+name+" - [0:0]")
			xs = append(xs, "-X "+name)
		case strings.HasPrefix(line, "-A "):
			chain, rest, _ := strings.Cut(line[3:], " ")
			if strings.HasPrefix(chain, chainPrefix) {
				continue
			}
			if strings.Contains(rest, "-j "+chainPrefix) || strings.Contains(rest, "-g "+chainPrefix) {
				dels = append(dels, "-D "+chain+" "+rest)
			}
		}
	}
	if len(decl)+len(dels) == 0 {
		return
	}
	out.WriteString("*" + string(t) + "\n")
	for _, l := range [][]string{decl, dels, xs} {
		for _, s := range l {
			out.WriteString(s + "\n")
		}
	}
	out.WriteString("COMMIT\n")
}
