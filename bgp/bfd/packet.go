package bfd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// State is a BFD session state as carried in the Sta field (RFC 5880 section 4.1).
type State uint8

// The session states, with their wire values.
const (
	StateAdminDown State = 0
	StateDown      State = 1
	StateInit      State = 2
	StateUp        State = 3
)

// String returns the RFC name of the state ("AdminDown", "Down", "Init", "Up").
func (s State) String() string {
	switch s {
	case StateAdminDown:
		return "AdminDown"
	case StateDown:
		return "Down"
	case StateInit:
		return "Init"
	case StateUp:
		return "Up"
	}
	return fmt.Sprintf("State(%d)", uint8(s))
}

// Diag is the diagnostic code a system reports for its last change of state
// (RFC 5880 section 4.1).
type Diag uint8

// Diagnostic codes used by this package (values 0-8 are defined by RFC 5880).
const (
	DiagNone                  Diag = 0
	DiagControlDetectExpired  Diag = 1
	DiagEchoFailed            Diag = 2
	DiagNeighborSignaledDown  Diag = 3
	DiagForwardingPlaneReset  Diag = 4
	DiagPathDown              Diag = 5
	DiagConcatenatedPathDown  Diag = 6
	DiagAdministrativelyDown  Diag = 7
	DiagReverseConcatPathDown Diag = 8
	maxDiag                   Diag = 31
)

// String returns a short name of the diagnostic.
func (d Diag) String() string {
	switch d {
	case DiagNone:
		return "none"
	case DiagControlDetectExpired:
		return "control-detection-time-expired"
	case DiagEchoFailed:
		return "echo-function-failed"
	case DiagNeighborSignaledDown:
		return "neighbor-signaled-session-down"
	case DiagForwardingPlaneReset:
		return "forwarding-plane-reset"
	case DiagPathDown:
		return "path-down"
	case DiagConcatenatedPathDown:
		return "concatenated-path-down"
	case DiagAdministrativelyDown:
		return "administratively-down"
	case DiagReverseConcatPathDown:
		return "reverse-concatenated-path-down"
	}
	return fmt.Sprintf("diag-%d", uint8(d))
}

// Version is the only BFD protocol version this package speaks.
const Version = 1

// HeaderLen is the length of a Control packet without authentication.
const HeaderLen = 24

// maxInterval is the largest interval the 32-bit microsecond fields hold.
const maxInterval = time.Duration(1<<32-1) * time.Microsecond

// ControlPacket is a BFD Control packet (RFC 5880 section 4.1). Intervals are
// carried on the wire in microseconds; here they are durations.
type ControlPacket struct {
	Diag                    Diag
	State                   State
	Poll                    bool
	Final                   bool
	ControlPlaneIndependent bool
	Demand                  bool
	Multipoint              bool
	DetectMult              uint8
	MyDiscriminator         uint32
	YourDiscriminator       uint32
	DesiredMinTxInterval    time.Duration
	RequiredMinRxInterval   time.Duration
	RequiredMinEchoRx       time.Duration
	// Auth is the raw authentication section (Auth Type, Auth Len, data) when
	// the A bit is set; nil otherwise. This package does not verify it.
	Auth []byte
}

// Errors returned by Unmarshal for packets that RFC 5880 section 6.8.6 says to
// discard. They are wrapped with details; test with errors.Is.
var (
	ErrShort         = errors.New("bfd: packet shorter than its header")
	ErrVersion       = errors.New("bfd: unsupported version")
	ErrLength        = errors.New("bfd: bad length field")
	ErrDetectMult    = errors.New("bfd: detect multiplier is zero")
	ErrMultipoint    = errors.New("bfd: multipoint bit set")
	ErrDiscriminator = errors.New("bfd: bad discriminator")
	ErrAuth          = errors.New("bfd: bad authentication section")
)

// Unmarshal decodes a Control packet and applies the validity checks of RFC
// 5880 section 6.8.6 that need no session state: version 1, a length field
// that fits the datagram and is at least 24 (26 with authentication), a
// non-zero detect multiplier, the Multipoint bit clear, a non-zero My
// Discriminator, and a non-zero Your Discriminator unless the state is Down or
// AdminDown. Bytes after the length field (padding) are ignored. It never
// panics and never retains b.
func Unmarshal(b []byte) (ControlPacket, error) {
	var p ControlPacket
	if len(b) < HeaderLen {
		return p, fmt.Errorf("%w: %d bytes", ErrShort, len(b))
	}
	if v := b[0] >> 5; v != Version {
		return p, fmt.Errorf("%w %d", ErrVersion, v)
	}
	p.Diag = Diag(b[0] & 0x1f)
	p.State = State(b[1] >> 6)
	p.Poll = b[1]&0x20 != 0
	p.Final = b[1]&0x10 != 0
	p.ControlPlaneIndependent = b[1]&0x08 != 0
	auth := b[1]&0x04 != 0
	p.Demand = b[1]&0x02 != 0
	p.Multipoint = b[1]&0x01 != 0
	p.DetectMult = b[2]
	length := int(b[3])
	min := HeaderLen
	if auth {
		min = HeaderLen + 2
	}
	if length < min || length > len(b) {
		return p, fmt.Errorf("%w: %d (datagram %d bytes)", ErrLength, length, len(b))
	}
	if p.DetectMult == 0 {
		return p, ErrDetectMult
	}
	if p.Multipoint {
		return p, ErrMultipoint
	}
	p.MyDiscriminator = binary.BigEndian.Uint32(b[4:8])
	p.YourDiscriminator = binary.BigEndian.Uint32(b[8:12])
	if p.MyDiscriminator == 0 {
		return p, fmt.Errorf("%w: My Discriminator is zero", ErrDiscriminator)
	}
	if p.YourDiscriminator == 0 && p.State != StateDown && p.State != StateAdminDown {
		return p, fmt.Errorf("%w: Your Discriminator is zero in state %s", ErrDiscriminator, p.State)
	}
	p.DesiredMinTxInterval = time.Duration(binary.BigEndian.Uint32(b[12:16])) * time.Microsecond
	p.RequiredMinRxInterval = time.Duration(binary.BigEndian.Uint32(b[16:20])) * time.Microsecond
	p.RequiredMinEchoRx = time.Duration(binary.BigEndian.Uint32(b[20:24])) * time.Microsecond
	if auth {
		sec := b[HeaderLen:length]
		if int(sec[1]) != len(sec) {
			return p, fmt.Errorf("%w: Auth Len %d, section %d bytes", ErrAuth, sec[1], len(sec))
		}
		p.Auth = append([]byte(nil), sec...)
	}
	return p, nil
}

// Append encodes p and appends it to b. It refuses values the wire format
// cannot carry (a diagnostic above 31, a state above 3, a negative interval or
// one above 2^32-1 microseconds, an authentication section whose Auth Len byte
// is not its length or that makes the packet longer than 255 bytes); intervals
// are truncated to whole microseconds.
func (p ControlPacket) Append(b []byte) ([]byte, error) {
	if p.Diag > maxDiag {
		return b, fmt.Errorf("bfd: diagnostic %d does not fit 5 bits", p.Diag)
	}
	if p.State > StateUp {
		return b, fmt.Errorf("bfd: state %d does not fit 2 bits", p.State)
	}
	length := HeaderLen
	if p.Auth != nil {
		if len(p.Auth) < 2 || int(p.Auth[1]) != len(p.Auth) || HeaderLen+len(p.Auth) > 255 {
			return b, fmt.Errorf("%w: %d bytes with Auth Len byte", ErrAuth, len(p.Auth))
		}
		length += len(p.Auth)
	}
	var us [3]uint32
	for i, d := range []time.Duration{p.DesiredMinTxInterval, p.RequiredMinRxInterval, p.RequiredMinEchoRx} {
		if d < 0 || d > maxInterval {
			return b, fmt.Errorf("bfd: interval %v out of range", d)
		}
		us[i] = uint32(d / time.Microsecond)
	}
	flags := byte(p.State) << 6
	for _, f := range []struct {
		set bool
		bit byte
	}{{p.Poll, 0x20}, {p.Final, 0x10}, {p.ControlPlaneIndependent, 0x08}, {p.Auth != nil, 0x04}, {p.Demand, 0x02}, {p.Multipoint, 0x01}} {
		if f.set {
			flags |= f.bit
		}
	}
	b = append(b, Version<<5|byte(p.Diag), flags, p.DetectMult, byte(length))
	b = binary.BigEndian.AppendUint32(b, p.MyDiscriminator)
	b = binary.BigEndian.AppendUint32(b, p.YourDiscriminator)
	for _, v := range us {
		b = binary.BigEndian.AppendUint32(b, v)
	}
	return append(b, p.Auth...), nil
}
