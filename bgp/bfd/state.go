package bfd

// event is something that can move a session's state (RFC 5880 section 6.2):
// a received packet carrying the remote state, the detection timer expiring,
// or a local administrative change.
type event uint8

const (
	evRecvAdminDown event = iota
	evRecvDown
	evRecvInit
	evRecvUp
	evDetectExpired
	evAdminDown
	evAdminUp
)

// recvEvent is the event of receiving a packet whose Sta field is remote.
func recvEvent(remote State) event {
	switch remote {
	case StateAdminDown:
		return evRecvAdminDown
	case StateDown:
		return evRecvDown
	case StateInit:
		return evRecvInit
	default:
		return evRecvUp
	}
}

// transition is the BFD state machine of RFC 5880 sections 6.2 and 6.8.6 as a
// pure function: the state a session in local state s moves to on e, the
// diagnostic to report with it, and whether anything changed.
//
// A session in AdminDown ignores everything but evAdminUp. A remote AdminDown
// takes Init and Up to Down with "neighbor signaled session down"; a remote
// Down moves Down to Init (the three-way handshake) and Up to Down; a remote
// Init or Up moves Init to Up, and a remote Init moves Down to Up. A remote Up
// seen while Down is ignored: the remote must first see us. The detection
// timer takes Init and Up to Down.
func transition(s State, e event) (State, Diag, bool) {
	switch e {
	case evAdminDown:
		if s == StateAdminDown {
			return s, DiagNone, false
		}
		return StateAdminDown, DiagAdministrativelyDown, true
	case evAdminUp:
		if s != StateAdminDown {
			return s, DiagNone, false
		}
		return StateDown, DiagNone, true
	}
	switch s {
	case StateDown:
		switch e {
		case evRecvDown:
			return StateInit, DiagNone, true
		case evRecvInit:
			return StateUp, DiagNone, true
		}
	case StateInit:
		switch e {
		case evRecvAdminDown:
			return StateDown, DiagNeighborSignaledDown, true
		case evRecvInit, evRecvUp:
			return StateUp, DiagNone, true
		case evDetectExpired:
			return StateDown, DiagControlDetectExpired, true
		}
	case StateUp:
		switch e {
		case evRecvAdminDown, evRecvDown:
			return StateDown, DiagNeighborSignaledDown, true
		case evDetectExpired:
			return StateDown, DiagControlDetectExpired, true
		}
	}
	return s, DiagNone, false
}
