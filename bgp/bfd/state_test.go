package bfd

import (
	"fmt"
	"testing"
)

// TestTransition walks every state against every event: the table is RFC 5880
// section 6.8.6 (received packets), 6.8.4 (detection timer) and 6.8.16
// (administrative control), written out so a changed rule shows up as a row.
func TestTransition(t *testing.T) {
	type row struct {
		next State
		diag Diag
	}
	same := func(s State) row { return row{s, DiagNone} }
	down := func(d Diag) row { return row{StateDown, d} }
	admin := row{StateAdminDown, DiagAdministrativelyDown}
	events := []event{evRecvAdminDown, evRecvDown, evRecvInit, evRecvUp, evDetectExpired, evAdminDown, evAdminUp}
	table := map[State][]row{
		//                 AdminDown rx                     Down rx                        Init rx              Up rx                detect expired                     admin down  admin up
		StateAdminDown: {same(StateAdminDown), same(StateAdminDown), same(StateAdminDown), same(StateAdminDown), same(StateAdminDown), same(StateAdminDown), down(DiagNone)},
		StateDown:      {same(StateDown), same(StateInit), same(StateUp), same(StateDown), same(StateDown), admin, same(StateDown)},
		StateInit:      {down(DiagNeighborSignaledDown), same(StateInit), same(StateUp), same(StateUp), down(DiagControlDetectExpired), admin, same(StateInit)},
		StateUp:        {down(DiagNeighborSignaledDown), down(DiagNeighborSignaledDown), same(StateUp), same(StateUp), down(DiagControlDetectExpired), admin, same(StateUp)},
	}
	for s, rows := range table {
		for i, e := range events {
			t.Run(fmt.Sprintf("%s/event%d", s, e), func(t *testing.T) {
				next, diag, changed := transition(s, e)
				want := rows[i]
				if next != want.next || diag != want.diag || changed != (next != s) {
					t.Fatalf("got %s %s changed=%v, want %s %s", next, diag, changed, want.next, want.diag)
				}
			})
		}
	}
}

func TestRecvEvent(t *testing.T) {
	for s, want := range map[State]event{StateAdminDown: evRecvAdminDown, StateDown: evRecvDown, StateInit: evRecvInit, StateUp: evRecvUp} {
		if got := recvEvent(s); got != want {
			t.Errorf("recvEvent(%s) = %d, want %d", s, got, want)
		}
	}
}
