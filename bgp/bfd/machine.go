package bfd

import "time"

// slowTxInterval is the least DesiredMinTxInterval a session advertises while
// it is not Up (RFC 5880 section 6.8.3).
const slowTxInterval = time.Second

// params are the timer parameters one side of a session chooses.
type params struct {
	// DesiredMinTx is the interval at which this side wants to send once the
	// session is Up (bfd.DesiredMinTxInterval). While the session is not Up,
	// at least one second is used, as RFC 5880 requires.
	DesiredMinTx time.Duration
	// RequiredMinRx is the shortest interval between received packets this
	// side can handle (bfd.RequiredMinRxInterval).
	RequiredMinRx time.Duration
	// DetectMult is how many intervals without a packet the remote side waits
	// before declaring the session down (bfd.DetectMult).
	DetectMult uint8
}

// machine is one session's protocol state without sockets or clocks: the
// shell feeds it received packets and the time, asks it what to send and
// when, and reports its state changes. It implements RFC 5880 sections 6.8.1
// to 6.8.7 for asynchronous mode without Demand mode, Echo or authentication.
type machine struct {
	cfg   params
	state State
	diag  Diag

	myDiscr   uint32
	yourDiscr uint32 // bfd.RemoteDiscr

	remoteState      State
	remoteDiag       Diag          // the diagnostic of the last packet received
	remoteMinRx      time.Duration // bfd.RemoteMinRxInterval
	remoteDesiredTx  time.Duration
	remoteDetectMult uint8

	// advTx and advRx are the intervals advertised in our packets; useTx and
	// useRx those in effect for our transmit rate and our detection time.
	// They differ only during a Poll Sequence, during which an increase of
	// DesiredMinTx and a decrease of RequiredMinRx wait for the remote side's
	// Final (section 6.8.3).
	advTx, advRx time.Duration
	useTx, useRx time.Duration
	polling      bool
	final        bool // a packet with the F bit is owed

	detectDeadline time.Time // zero while nothing is being detected
}

func newMachine(myDiscr uint32, t params) *machine {
	m := &machine{
		cfg:         t,
		state:       StateDown,
		myDiscr:     myDiscr,
		remoteState: StateDown,
		remoteMinRx: time.Microsecond, // section 6.8.1: initialised to 1
	}
	m.advTx, m.advRx = m.wantTx(), t.RequiredMinRx
	m.useTx, m.useRx = m.advTx, m.advRx
	return m
}

// wantTx is the DesiredMinTxInterval to advertise in the current state.
func (m *machine) wantTx() time.Duration {
	if m.state != StateUp {
		return max(m.cfg.DesiredMinTx, slowTxInterval)
	}
	return m.cfg.DesiredMinTx
}

// receive processes a packet that passed Unmarshal's checks and belongs to
// this session (RFC 5880 section 6.8.6, from "If the A bit is set"). It
// reports whether the session state changed. Packets with authentication are
// discarded: this package configures none.
func (m *machine) receive(p ControlPacket, now time.Time) bool {
	if p.Auth != nil {
		return false
	}
	m.yourDiscr = p.MyDiscriminator
	m.remoteState = p.State
	m.remoteDiag = p.Diag
	m.remoteMinRx = p.RequiredMinRxInterval
	m.remoteDesiredTx = p.DesiredMinTxInterval
	m.remoteDetectMult = p.DetectMult
	if p.Final && m.polling {
		m.polling = false
		m.useTx, m.useRx = m.advTx, m.advRx
	}
	if m.state == StateAdminDown {
		return false
	}
	changed := m.apply(recvEvent(p.State))
	if p.Poll {
		m.final = true
	}
	m.detectDeadline = now.Add(m.detectTime())
	return changed
}

// expire handles the detection timer at now: it reports whether the session
// went down. Whatever the state, the remote discriminator is forgotten
// (section 6.8.1), so a restarted remote side is found again by address.
func (m *machine) expire(now time.Time) bool {
	if m.detectDeadline.IsZero() || now.Before(m.detectDeadline) {
		return false
	}
	m.detectDeadline = time.Time{}
	m.yourDiscr = 0
	m.remoteState = StateDown
	m.remoteDiag = DiagNone
	return m.apply(evDetectExpired)
}

// apply runs the state machine and adjusts the advertised intervals to the
// new state.
func (m *machine) apply(e event) bool {
	next, diag, changed := transition(m.state, e)
	if !changed {
		return false
	}
	wasUp := m.state == StateUp
	m.state = next
	if diag != DiagNone || next == StateUp {
		m.diag = diag
	}
	switch {
	case next == StateUp:
		// Leaving the one-second floor is a change of DesiredMinTx and
		// needs a Poll Sequence; a decrease applies at once.
		m.advertise(m.wantTx(), m.cfg.RequiredMinRx)
	case wasUp:
		m.polling = false
		m.advTx, m.advRx = m.wantTx(), m.cfg.RequiredMinRx
		m.useTx, m.useRx = m.advTx, m.advRx
	}
	if next == StateAdminDown {
		m.detectDeadline = time.Time{}
	}
	return true
}

// setTimers changes the local parameters. While Up the change is announced
// with a Poll Sequence and applied as section 6.8.3 says; otherwise at once.
func (m *machine) setTimers(t params) {
	m.cfg = t
	if m.state != StateUp {
		m.advTx, m.advRx = m.wantTx(), t.RequiredMinRx
		m.useTx, m.useRx = m.advTx, m.advRx
		return
	}
	m.advertise(m.wantTx(), t.RequiredMinRx)
}

// advertise starts announcing tx and rx while Up: decreases of the transmit
// interval and increases of the receive interval apply at once, the others
// when the Poll Sequence ends.
func (m *machine) advertise(tx, rx time.Duration) {
	if tx == m.advTx && rx == m.advRx {
		return
	}
	m.advTx, m.advRx = tx, rx
	m.useTx = min(m.useTx, tx)
	m.useRx = max(m.useRx, rx)
	m.polling = true
}

// adminDown takes the session to AdminDown (it then ignores the remote side
// and the remote side sees it as administratively down, not failed).
func (m *machine) adminDown() bool { return m.apply(evAdminDown) }

// detectTime is the Detection Time in asynchronous mode (section 6.8.4): the
// remote DetectMult times the agreed interval, the larger of our
// RequiredMinRx and the remote DesiredMinTx.
func (m *machine) detectTime() time.Duration {
	return time.Duration(m.remoteDetectMult) * max(m.useRx, m.remoteDesiredTx)
}

// txInterval is the interval between periodic packets before jitter (section
// 6.8.7): the larger of our DesiredMinTx and the remote RequiredMinRx. Zero
// means send nothing periodically: the remote side asked for no packets.
func (m *machine) txInterval() time.Duration {
	if m.remoteMinRx == 0 {
		return 0
	}
	return max(m.useTx, m.remoteMinRx)
}

// packet builds the next Control packet and clears the owed Final. Poll and
// Final are never set together (section 6.5): a Final goes out without Poll
// and the Poll is repeated in the next periodic packet.
func (m *machine) packet() ControlPacket {
	p := ControlPacket{
		Diag:                  m.diag,
		State:                 m.state,
		DetectMult:            m.cfg.DetectMult,
		MyDiscriminator:       m.myDiscr,
		YourDiscriminator:     m.yourDiscr,
		DesiredMinTxInterval:  m.advTx,
		RequiredMinRxInterval: m.advRx,
	}
	if m.final {
		p.Final = true
		m.final = false
	} else {
		p.Poll = m.polling
	}
	return p
}
