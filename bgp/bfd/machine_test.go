package bfd

import (
	"testing"
	"time"
)

var fast = params{DesiredMinTx: 100 * time.Millisecond, RequiredMinRx: 100 * time.Millisecond, DetectMult: 3}

// exchange delivers one packet from a to b at now (through the codec, so
// the test also covers what goes on the wire) and reports b's state change.
func exchange(t *testing.T, from, to *machine, now time.Time) bool {
	t.Helper()
	b, err := from.packet().Append(nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := Unmarshal(b)
	if err != nil {
		t.Fatalf("packet from %d rejected: %v", from.myDiscr, err)
	}
	return to.receive(p, now)
}

// upPair brings two machines Up with the three-way handshake.
func upPair(t *testing.T, now time.Time) (a, b *machine) {
	t.Helper()
	a, b = newMachine(1, fast), newMachine(2, fast)
	steps := []struct {
		from, to *machine
		want     State
	}{
		{a, b, StateInit}, // b sees a Down: Init
		{b, a, StateUp},   // a sees b Init: Up
		{a, b, StateUp},   // b sees a Up: Up
	}
	for i, s := range steps {
		if !exchange(t, s.from, s.to, now) || s.to.state != s.want {
			t.Fatalf("step %d: state %s, want %s", i, s.to.state, s.want)
		}
	}
	return a, b
}

func TestHandshakeAndRates(t *testing.T) {
	now := time.Unix(1000, 0)
	a := newMachine(1, fast)
	// While not Up, at most one packet a second, and that is what is advertised.
	if p := a.packet(); p.DesiredMinTxInterval != time.Second || p.State != StateDown || p.YourDiscriminator != 0 {
		t.Fatalf("first packet %+v", p)
	}
	if a.txInterval() != time.Second {
		t.Fatalf("tx interval while Down %v", a.txInterval())
	}
	a, b := upPair(t, now)
	if a.yourDiscr != 2 || b.yourDiscr != 1 {
		t.Fatalf("discriminators not learned: %d %d", a.yourDiscr, b.yourDiscr)
	}
	// Coming Up lowers DesiredMinTx at once and announces it with a Poll.
	if a.txInterval() != 100*time.Millisecond || !a.polling {
		t.Fatalf("a after Up: tx %v polling %v", a.txInterval(), a.polling)
	}
	pa := a.packet()
	if !pa.Poll || pa.DesiredMinTxInterval != 100*time.Millisecond {
		t.Fatalf("a's packet after Up %+v", pa)
	}
	b.receive(pa, now)
	pb := b.packet()
	if !pb.Final || pb.Poll {
		t.Fatalf("b owes a Final without Poll, sent %+v", pb)
	}
	a.receive(pb, now)
	if a.polling {
		t.Fatal("a still polling after the Final")
	}
	if a.detectTime() != 300*time.Millisecond {
		t.Fatalf("detect time %v, want 3 x 100ms", a.detectTime())
	}
}

func TestDetectionTimeout(t *testing.T) {
	now := time.Unix(1000, 0)
	a, b := upPair(t, now)
	exchange(t, b, a, now)
	deadline := a.detectDeadline
	if want := now.Add(300 * time.Millisecond); !deadline.Equal(want) {
		t.Fatalf("deadline %v, want %v", deadline, want)
	}
	if a.expire(deadline.Add(-time.Millisecond)) {
		t.Fatal("expired before the detection time")
	}
	if !a.expire(deadline) || a.state != StateDown || a.diag != DiagControlDetectExpired {
		t.Fatalf("after silence: %s %s", a.state, a.diag)
	}
	if a.yourDiscr != 0 || a.txInterval() != time.Second {
		t.Fatalf("after timeout: remote discriminator %d (want 0), tx %v (want 1s)", a.yourDiscr, a.txInterval())
	}
	// The detection time follows the slower of our RX and their TX.
	a, b = upPair(t, now)
	b.setTimers(params{DesiredMinTx: time.Second, RequiredMinRx: 100 * time.Millisecond, DetectMult: 5})
	exchange(t, b, a, now)
	if a.detectTime() != 5*time.Second {
		t.Fatalf("detect time %v, want 5 x 1s", a.detectTime())
	}
}

func TestRemoteSignalsDown(t *testing.T) {
	now := time.Unix(1000, 0)
	a, b := upPair(t, now)
	b.adminDown()
	if !exchange(t, b, a, now) || a.state != StateDown || a.diag != DiagNeighborSignaledDown {
		t.Fatalf("after remote AdminDown: %s %s", a.state, a.diag)
	}
	// A session in AdminDown ignores its peer.
	if exchange(t, a, b, now) || b.state != StateAdminDown {
		t.Fatalf("AdminDown session moved to %s", b.state)
	}
}

// The diagnostic the remote side sends is kept: a restarted remote session
// (a new discriminator, Down, no diagnostic) and a remote detection failure
// both take this side Down, and only the diagnostic tells them apart.
func TestRemoteDiagnosticKept(t *testing.T) {
	now := time.Unix(1000, 0)
	a, _ := upPair(t, now)
	restarted := newMachine(7, fast)
	if !exchange(t, restarted, a, now) || a.state != StateDown || a.diag != DiagNeighborSignaledDown || a.remoteDiag != DiagNone {
		t.Fatalf("after the remote restarted: %s %s, remote diag %s", a.state, a.diag, a.remoteDiag)
	}

	a, b := upPair(t, now)
	later := now.Add(time.Second)
	if !b.expire(later) || b.state != StateDown {
		t.Fatalf("b did not time out: %s", b.state)
	}
	if !exchange(t, b, a, later) || a.state != StateDown || a.remoteDiag != DiagControlDetectExpired {
		t.Fatalf("after the remote timed out: %s, remote diag %s", a.state, a.remoteDiag)
	}
}

func TestPollSequenceDefersSlowerTimers(t *testing.T) {
	now := time.Unix(1000, 0)
	a, b := upPair(t, now)
	// Finish the Up polls.
	exchange(t, a, b, now)
	exchange(t, b, a, now)
	exchange(t, b, a, now)
	exchange(t, a, b, now)
	if a.polling || b.polling {
		t.Fatal("polls after Up did not finish")
	}

	// Slower TX and faster RX: the old values stay in force until the Final.
	a.setTimers(params{DesiredMinTx: 500 * time.Millisecond, RequiredMinRx: 50 * time.Millisecond, DetectMult: 3})
	if a.useTx != 100*time.Millisecond || a.useRx != 100*time.Millisecond || !a.polling {
		t.Fatalf("during poll: tx %v rx %v polling %v", a.useTx, a.useRx, a.polling)
	}
	p := a.packet()
	if !p.Poll || p.DesiredMinTxInterval != 500*time.Millisecond || p.RequiredMinRxInterval != 50*time.Millisecond {
		t.Fatalf("poll packet %+v", p)
	}
	b.receive(p, now)
	exchange(t, b, a, now) // b's Final
	if a.polling || a.useTx != 500*time.Millisecond || a.useRx != 50*time.Millisecond {
		t.Fatalf("after Final: tx %v rx %v polling %v", a.useTx, a.useRx, a.polling)
	}

	// Faster TX and slower RX apply at once.
	a.setTimers(params{DesiredMinTx: 50 * time.Millisecond, RequiredMinRx: 200 * time.Millisecond, DetectMult: 3})
	if a.useTx != 50*time.Millisecond || a.useRx != 200*time.Millisecond {
		t.Fatalf("immediate change: tx %v rx %v", a.useTx, a.useRx)
	}
	// The remote asking for no packets stops periodic transmission.
	b.setTimers(params{DesiredMinTx: 100 * time.Millisecond, RequiredMinRx: 0, DetectMult: 3})
	exchange(t, b, a, now)
	if a.txInterval() != 0 {
		t.Fatalf("tx interval %v after remote RequiredMinRx 0", a.txInterval())
	}
}

func TestTimersWhileDownApplyAtOnce(t *testing.T) {
	a := newMachine(1, fast)
	a.setTimers(params{DesiredMinTx: 2 * time.Second, RequiredMinRx: 10 * time.Millisecond, DetectMult: 2})
	if a.polling || a.useTx != 2*time.Second || a.useRx != 10*time.Millisecond {
		t.Fatalf("tx %v rx %v polling %v", a.useTx, a.useRx, a.polling)
	}
}
