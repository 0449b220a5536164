package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// entry is one file system object of a layer. Paths are absolute ("/usr/sbin/x");
// owner and times are not taken from the build machine: every entry is owned by
// uid/gid as given (0 unless set) and dated at the image's creation time.
type entry struct {
	Path     string
	Mode     fs.FileMode // permission bits plus fs.ModeDir / fs.ModeSymlink / fs.ModeSticky
	UID, GID int
	Data     []byte // regular files
	Target   string // symlinks
}

// layerSet collects entries by path; adding the same path twice with different
// content is an error, so two sources cannot silently shadow each other.
type layerSet struct {
	entries map[string]entry
}

func newLayerSet() *layerSet { return &layerSet{entries: map[string]entry{}} }

func (s *layerSet) add(e entry) error {
	e.Path = path.Clean("/" + e.Path)
	if e.Path == "/" {
		return nil
	}
	if old, ok := s.entries[e.Path]; ok {
		if old.Mode != e.Mode || old.Target != e.Target || !bytes.Equal(old.Data, e.Data) || old.UID != e.UID || old.GID != e.GID {
			return fmt.Errorf("image: %s added twice with different content", e.Path)
		}
		return nil
	}
	s.entries[e.Path] = e
	return nil
}

// tar returns the layer's uncompressed tar stream: parents before children,
// paths in byte order, fixed owners and times, so equal entries give equal bytes.
// Parent directories that were not added explicitly appear as root-owned 0755.
func (s *layerSet) tar(mtime time.Time) ([]byte, error) {
	all := map[string]entry{}
	for p, e := range s.entries {
		all[p] = e
		for dir := path.Dir(p); dir != "/"; dir = path.Dir(dir) {
			if _, ok := s.entries[dir]; !ok {
				all[dir] = entry{Path: dir, Mode: fs.ModeDir | 0o755}
			}
		}
	}
	paths := make([]string, 0, len(all))
	for p := range all {
		paths = append(paths, p)
	}
	slices.SortFunc(paths, comparePaths)
	for i, p := range paths {
		// Sorted by components, a path's descendants follow it directly.
		if all[p].Mode&fs.ModeDir == 0 && i+1 < len(paths) && strings.HasPrefix(paths[i+1], p+"/") {
			return nil, fmt.Errorf("image: %s is not a directory but has entries below it", p)
		}
	}

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, p := range paths {
		e := all[p]
		h := &tar.Header{
			Name:    strings.TrimPrefix(p, "/"),
			Mode:    int64(e.Mode.Perm()),
			Uid:     e.UID,
			Gid:     e.GID,
			ModTime: mtime,
			Format:  tar.FormatPAX,
		}
		if e.Mode&fs.ModeSticky != 0 {
			h.Mode |= 0o1000
		}
		switch {
		case e.Mode&fs.ModeDir != 0:
			h.Typeflag = tar.TypeDir
			h.Name += "/"
		case e.Mode&fs.ModeSymlink != 0:
			h.Typeflag = tar.TypeSymlink
			h.Linkname = e.Target
		case e.Mode.IsRegular():
			h.Typeflag = tar.TypeReg
			h.Size = int64(len(e.Data))
		default:
			return nil, fmt.Errorf("image: %s: unsupported file type %v", p, e.Mode.Type())
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("image: %s: %w", p, err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(e.Data); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// comparePaths orders paths component by component, so that a directory is
// followed by everything below it ("/a", "/a/c", "/a-b").
func comparePaths(a, b string) int {
	return slices.Compare(strings.Split(a, "/"), strings.Split(b, "/"))
}

// gzipBytes compresses once, in this process, with the standard library at a
// fixed level and without a header time or name: the same tar always gives the
// same blob (for a given Go release).
func gzipBytes(b []byte) ([]byte, error) {
	var out bytes.Buffer
	zw, err := gzip.NewWriterLevel(&out, gzip.DefaultCompression)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(b); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// layer turns the set into an OCI gzip layer (compressed once, kept in memory).
func (s *layerSet) layer(mtime time.Time) (v1.Layer, error) {
	raw, err := s.tar(mtime)
	if err != nil {
		return nil, err
	}
	gz, err := gzipBytes(raw)
	if err != nil {
		return nil, err
	}
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(gz)), nil
	}, tarball.WithMediaType(types.OCILayer))
}
