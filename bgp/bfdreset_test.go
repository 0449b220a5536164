package bgp

import (
	"testing"

	"github.com/ironlb/ironlb/bgp/bfd"
)

// Only a BFD session that says the path failed resets BGP: this side's
// detection timer, or a remote side that diagnosed a failure. A remote side
// that merely started its session again (FRR replaces its session at every
// BGP session start) or went AdminDown does not.
func TestPathFailed(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    bfd.Change
		want bool
	}{
		{"detection time expired", bfd.Change{Old: bfd.StateUp, State: bfd.StateDown, Diag: bfd.DiagControlDetectExpired}, true},
		{"remote timed out", bfd.Change{Old: bfd.StateUp, State: bfd.StateDown, Diag: bfd.DiagNeighborSignaledDown, Remote: bfd.StateDown, RemoteDiag: bfd.DiagControlDetectExpired}, true},
		{"remote path down", bfd.Change{Old: bfd.StateUp, State: bfd.StateDown, Diag: bfd.DiagNeighborSignaledDown, Remote: bfd.StateDown, RemoteDiag: bfd.DiagPathDown}, true},
		{"remote session started again", bfd.Change{Old: bfd.StateUp, State: bfd.StateDown, Diag: bfd.DiagNeighborSignaledDown, Remote: bfd.StateDown, RemoteDiag: bfd.DiagNone}, false},
		{"remote AdminDown", bfd.Change{Old: bfd.StateUp, State: bfd.StateDown, Diag: bfd.DiagNeighborSignaledDown, Remote: bfd.StateAdminDown, RemoteDiag: bfd.DiagAdministrativelyDown}, false},
		{"this side AdminDown", bfd.Change{Old: bfd.StateUp, State: bfd.StateAdminDown, Diag: bfd.DiagAdministrativelyDown}, false},
	} {
		if got := pathFailed(tc.c); got != tc.want {
			t.Errorf("%s: pathFailed = %v, want %v", tc.name, got, tc.want)
		}
	}
}
