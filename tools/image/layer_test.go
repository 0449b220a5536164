package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"io/fs"
	"strings"
	"testing"
	"time"
)

type tarEntry struct {
	name, link string
	mode       int64
	uid        int
	typ        byte
	mtime      time.Time
}

func readTar(t *testing.T, b []byte) []tarEntry {
	t.Helper()
	var out []tarEntry
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, tarEntry{h.Name, h.Linkname, h.Mode, h.Uid, h.Typeflag, h.ModTime})
	}
}

// The order entries are added in, and the time the build runs at, change
// nothing: only content and the given creation time are in the bytes.
func TestLayerIsDeterministic(t *testing.T) {
	entries := []entry{
		{Path: "/usr/sbin/iptables", Mode: fs.ModeSymlink | 0o777, Target: "xtables-nft-multi"},
		{Path: "/a-b", Mode: 0o644, Data: []byte("x")},
		{Path: "/a/c", Mode: 0o755, Data: []byte("y")},
		{Path: "/tmp", Mode: fs.ModeDir | fs.ModeSticky | 0o777},
		{Path: "/home/nonroot", Mode: fs.ModeDir | 0o700, UID: 65532, GID: 65532},
	}
	mtime := time.Unix(1700000000, 0)
	var first []byte
	for _, order := range [][]int{{0, 1, 2, 3, 4}, {4, 3, 2, 1, 0}, {2, 0, 4, 1, 3}} {
		s := newLayerSet()
		for _, i := range order {
			if err := s.add(entries[i]); err != nil {
				t.Fatal(err)
			}
		}
		b, err := s.tar(mtime)
		if err != nil {
			t.Fatal(err)
		}
		if first == nil {
			first = b
		} else if !bytes.Equal(first, b) {
			t.Fatalf("order %v gave other bytes", order)
		}
	}
	got := readTar(t, first)
	var names []string
	for _, e := range got {
		names = append(names, e.name)
		if !e.mtime.Equal(mtime) {
			t.Errorf("%s dated %v, want %v", e.name, e.mtime, mtime)
		}
	}
	// Parents precede children, and /a's children precede /a-b.
	want := "a/ a/c a-b home/ home/nonroot/ tmp/ usr/ usr/sbin/ usr/sbin/iptables"
	if strings.Join(names, " ") != want {
		t.Errorf("entries %v, want %s", names, want)
	}
	for _, e := range got {
		switch e.name {
		case "tmp/":
			if e.mode != 0o1777 {
				t.Errorf("/tmp mode %o, want 1777", e.mode)
			}
		case "home/nonroot/":
			if e.uid != 65532 || e.mode != 0o700 {
				t.Errorf("/home/nonroot uid %d mode %o", e.uid, e.mode)
			}
		case "usr/sbin/iptables":
			if e.typ != tar.TypeSymlink || e.link != "xtables-nft-multi" {
				t.Errorf("iptables link %q type %c", e.link, e.typ)
			}
		case "usr/", "usr/sbin/":
			if e.mode != 0o755 || e.uid != 0 {
				t.Errorf("implicit parent %s: mode %o uid %d", e.name, e.mode, e.uid)
			}
		}
	}
}

func TestLayerRefusesConflicts(t *testing.T) {
	s := newLayerSet()
	if err := s.add(entry{Path: "/x", Mode: 0o644, Data: []byte("1")}); err != nil {
		t.Fatal(err)
	}
	if err := s.add(entry{Path: "/x", Mode: 0o644, Data: []byte("1")}); err != nil {
		t.Errorf("adding the same entry again: %v", err)
	}
	if err := s.add(entry{Path: "/x", Mode: 0o644, Data: []byte("2")}); err == nil {
		t.Error("a second /x with other content was accepted")
	}
	if err := s.add(entry{Path: "/x/y", Mode: 0o644}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.tar(time.Unix(0, 0)); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("a file with entries below it: %v", err)
	}
}

// A gzip blob carries no time or name of the build, and the same tar gives the
// same blob.
func TestGzipIsDeterministic(t *testing.T) {
	in := bytes.Repeat([]byte("ironlb "), 10000)
	a, err := gzipBytes(in)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := gzipBytes(in)
	if !bytes.Equal(a, b) {
		t.Fatal("two compressions of the same bytes differ")
	}
	zr, err := gzip.NewReader(bytes.NewReader(a))
	if err != nil {
		t.Fatal(err)
	}
	if !zr.ModTime.IsZero() || zr.Name != "" || zr.Comment != "" {
		t.Errorf("gzip header carries time %v, name %q, comment %q", zr.ModTime, zr.Name, zr.Comment)
	}
	out, err := io.ReadAll(zr)
	if err != nil || !bytes.Equal(out, in) {
		t.Errorf("round trip: %v", err)
	}
}
