//go:build linux

package handover

import (
	"strings"
	"testing"
	"time"

	"github.com/ironlb/ironlb/proxy/iptables"
)

// A window ends in the kernel too. A speaker that stops leaves its forwards
// for the next process (Detach); when there is none (the speaker was removed,
// or replaced by another implementation), the per-address rule stops
// matching at the window's end by itself: connections picked up after it are
// no longer sent to the old owner, although the rule is still there.
func TestRealHandoverWindowEndsWithoutTheProcess(t *testing.T) {
	forEachFamily(t, func(t *testing.T, l *handoverLab) {
		const window = 2 * time.Second
		start := time.Now()
		l.forward(window).Detach()
		// Within the window the kernel forwards without the process.
		if got, ok := l.survivesSwitch(); !ok {
			t.Fatalf("within the window, after Detach: the connection did not survive the switch (%q)", got)
		}
		// The kernel's end is the window's end rounded up to the second.
		time.Sleep(time.Until(start.Add(window).Truncate(time.Second).Add(2 * time.Second)))
		l.point(l.oldMAC)
		if got, ok := l.survivesSwitch(); ok {
			t.Fatalf("after the window, with no process: the connection was still forwarded (%q)", got)
		}
		if out := l.save(iptables.TableMangle); !strings.Contains(out, l.fam.vip) {
			t.Fatalf("the rule for %s is gone: the test did not show the kernel ending the window\n%s", l.fam.vip, out)
		}
	})
}
