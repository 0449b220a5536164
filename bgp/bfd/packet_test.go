package bfd

import (
	"bytes"
	"encoding/hex"
	"errors"
	"reflect"
	"testing"
	"time"
)

// frrDown is a packet as FRR's bfdd sends it when it starts a session:
// version 1, state Down, detect multiplier 3, its discriminator, ours not yet
// known, 1 s desired TX (the slow rate while not Up), 100 ms required RX and
// 50 ms echo.
const frrDown = "20400318" + "00000007" + "00000000" + "000f4240" + "000186a0" + "0000c350"

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestUnmarshalKnownPacket(t *testing.T) {
	p, err := Unmarshal(mustHex(t, frrDown))
	if err != nil {
		t.Fatal(err)
	}
	want := ControlPacket{
		State: StateDown, DetectMult: 3, MyDiscriminator: 7,
		DesiredMinTxInterval: time.Second, RequiredMinRxInterval: 100 * time.Millisecond,
		RequiredMinEchoRx: 50 * time.Millisecond,
	}
	if !reflect.DeepEqual(p, want) {
		t.Fatalf("got %+v\nwant %+v", p, want)
	}
	b, err := p.Append(nil)
	if err != nil || hex.EncodeToString(b) != frrDown {
		t.Fatalf("re-encoded %x, %v; want %s", b, err, frrDown)
	}
}

func TestAppendFlags(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    ControlPacket
		b1   byte // second octet: state and flags
	}{
		{"up", ControlPacket{State: StateUp}, 0xc0},
		{"poll", ControlPacket{State: StateUp, Poll: true}, 0xe0},
		{"final", ControlPacket{State: StateUp, Final: true}, 0xd0},
		{"cpi", ControlPacket{State: StateInit, ControlPlaneIndependent: true}, 0x88},
		{"demand", ControlPacket{State: StateAdminDown, Demand: true}, 0x02},
		{"auth", ControlPacket{State: StateDown, Auth: []byte{1, 4, 0, 0}}, 0x44},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.p.DetectMult, tc.p.MyDiscriminator, tc.p.YourDiscriminator, tc.p.Diag = 3, 1, 2, DiagPathDown
			b, err := tc.p.Append(nil)
			if err != nil {
				t.Fatal(err)
			}
			if b[0] != 0x20|byte(DiagPathDown) || b[1] != tc.b1 || int(b[3]) != len(b) {
				t.Fatalf("header %x, want version/diag %x, flags %x, length %d", b[:4], 0x20|byte(DiagPathDown), tc.b1, len(b))
			}
			got, err := Unmarshal(b)
			if err != nil || !reflect.DeepEqual(got, tc.p) {
				t.Fatalf("round trip: %+v, %v; want %+v", got, err, tc.p)
			}
		})
	}
}

func TestUnmarshalRejects(t *testing.T) {
	valid := mustHex(t, frrDown)
	edit := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), valid...)) }
	for _, tc := range []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrShort},
		{"23 bytes", valid[:23], ErrShort},
		{"version 0", edit(func(b []byte) []byte { b[0] &= 0x1f; return b }), ErrVersion},
		{"version 2", edit(func(b []byte) []byte { b[0] = 0x40; return b }), ErrVersion},
		{"length below header", edit(func(b []byte) []byte { b[3] = 20; return b }), ErrLength},
		{"length beyond datagram", edit(func(b []byte) []byte { b[3] = 25; return b }), ErrLength},
		{"auth without room", edit(func(b []byte) []byte { b[1] |= 0x04; return b }), ErrLength},
		{"auth len mismatch", edit(func(b []byte) []byte { b[1] |= 0x04; b[3] = 28; return append(b, 1, 3, 0, 0) }), ErrAuth},
		{"detect mult zero", edit(func(b []byte) []byte { b[2] = 0; return b }), ErrDetectMult},
		{"multipoint", edit(func(b []byte) []byte { b[1] |= 0x01; return b }), ErrMultipoint},
		{"my discriminator zero", edit(func(b []byte) []byte { copy(b[4:8], []byte{0, 0, 0, 0}); return b }), ErrDiscriminator},
		{"your discriminator zero while up", edit(func(b []byte) []byte { b[1] = 0xc0; return b }), ErrDiscriminator},
		{"your discriminator zero while init", edit(func(b []byte) []byte { b[1] = 0x80; return b }), ErrDiscriminator},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Unmarshal(tc.b)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	// Padding after the length field is not part of the packet.
	if p, err := Unmarshal(append(append([]byte(nil), valid...), 0xff, 0xff)); err != nil || p.Auth != nil {
		t.Fatalf("padded packet: %+v, %v", p, err)
	}
	// Your Discriminator may be zero while the sender is AdminDown.
	if _, err := Unmarshal(edit(func(b []byte) []byte { b[1] = 0x00; return b })); err != nil {
		t.Fatalf("AdminDown without Your Discriminator: %v", err)
	}
}

func TestAppendRejects(t *testing.T) {
	for _, p := range []ControlPacket{
		{Diag: 32},
		{State: 4},
		{DesiredMinTxInterval: -time.Microsecond},
		{RequiredMinRxInterval: maxInterval + time.Microsecond},
		{Auth: []byte{1}},
		{Auth: []byte{1, 5, 0, 0}},
		{Auth: append([]byte{1, 240}, make([]byte, 238)...)},
	} {
		if b, err := p.Append([]byte{9}); err == nil || !bytes.Equal(b, []byte{9}) {
			t.Errorf("%+v: got %x, %v; want an error and b unchanged", p, b, err)
		}
	}
}

// FuzzUnmarshal checks that decoding never panics and that every accepted
// packet re-encodes to the bytes it was decoded from (the 24-byte header and
// the authentication section; bytes a longer length field covers without
// authentication are not part of the packet) and decodes again to the same
// value.
func FuzzUnmarshal(f *testing.F) {
	f.Add(mustHex(f, frrDown))
	up, _ := ControlPacket{State: StateUp, Poll: true, DetectMult: 3, MyDiscriminator: 1, YourDiscriminator: 2,
		DesiredMinTxInterval: 100 * time.Millisecond, RequiredMinRxInterval: 100 * time.Millisecond}.Append(nil)
	f.Add(up)
	auth, _ := ControlPacket{State: StateDown, DetectMult: 1, MyDiscriminator: 9, Auth: []byte{1, 5, 1, 'x', 'y'}}.Append(nil)
	f.Add(auth)
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Unmarshal(b)
		if err != nil {
			return
		}
		out, err := p.Append(nil)
		if err != nil {
			t.Fatalf("decoded %+v does not encode: %v", p, err)
		}
		want := append([]byte(nil), b[:HeaderLen]...)
		if p.Auth != nil {
			want = append(want, b[HeaderLen:b[3]]...)
		}
		want[3] = byte(len(want))
		if !bytes.Equal(out, want) {
			t.Fatalf("re-encoded %x, want %x", out, want)
		}
		again, err := Unmarshal(out)
		if err != nil || !reflect.DeepEqual(again, p) {
			t.Fatalf("second decode %+v, %v; want %+v", again, err, p)
		}
	})
}
