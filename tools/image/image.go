package main

import (
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// NonRootUID is the user the image runs as unless a Pod says otherwise (the
// "nonroot" user of distroless images, so policies written for those apply).
const NonRootUID = 65532

// spec is what goes into the image.
type spec struct {
	// Binaries are static executables on the build machine, installed as
	// /<base name>, root-owned, mode 0755.
	Binaries []string
	// Entrypoint is the default command (the manifests always set their own).
	Entrypoint []string
	// IPTables adds Debian's iptables (nf_tables backend) from the build machine,
	// for the speaker's proxy.
	IPTables bool
	// Created dates the image and every file in it.
	Created time.Time
	// Labels go into the image config.
	Labels map[string]string
	// hostRoot prefixes host paths read for IPTables (tests).
	hostRoot string
}

// build assembles the image: a base layer (passwd/group with root and nonroot,
// /tmp), a layer with the binaries, and optionally an iptables layer. It reads
// only the files named in sp, and the result depends only on their content and
// on sp: the same inputs give the same digest.
func build(sp spec) (v1.Image, error) {
	if len(sp.Binaries) == 0 {
		return nil, fmt.Errorf("image: no binaries")
	}
	arch := ""
	bins := newLayerSet()
	for _, b := range sp.Binaries {
		a, err := binaryArch(b)
		if err != nil {
			return nil, err
		}
		if arch != "" && a != arch {
			return nil, fmt.Errorf("image: %s is %s, the other binaries are %s", b, a, arch)
		}
		arch = a
		data, err := os.ReadFile(b)
		if err != nil {
			return nil, err
		}
		if err := bins.add(entry{Path: "/" + filepath.Base(b), Mode: 0o755, Data: data}); err != nil {
			return nil, err
		}
	}

	layers := []*layerSet{baseLayer(), bins}
	var history []string
	history = append(history, "ironlb image: /etc/passwd, /etc/group (root, nonroot 65532), /tmp", "ironlb image: binaries "+fmt.Sprint(baseNames(sp.Binaries)))
	if sp.IPTables {
		set, version, err := iptablesLayer(sp.hostRoot, arch)
		if err != nil {
			return nil, err
		}
		layers = append(layers, set)
		history = append(history, "ironlb image: iptables "+version+" (nf_tables) with its extensions and libraries, from the build machine")
		if sp.Labels == nil {
			sp.Labels = map[string]string{}
		}
		sp.Labels["io.ironlb.image.iptables"] = version
	}

	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	created := v1.Time{Time: sp.Created.UTC()}
	var adds []mutate.Addendum
	for i, set := range layers {
		l, err := set.layer(sp.Created)
		if err != nil {
			return nil, err
		}
		adds = append(adds, mutate.Addendum{Layer: l, History: v1.History{Created: created, CreatedBy: history[i]}})
	}
	img, err := mutate.Append(img, adds...)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture = arch
	cf.OS = "linux"
	cf.Created = created
	cf.Config = v1.Config{
		User:       strconv.Itoa(NonRootUID) + ":" + strconv.Itoa(NonRootUID),
		Entrypoint: sp.Entrypoint,
		Env:        []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		WorkingDir: "/",
		Labels:     sp.Labels,
	}
	return mutate.ConfigFile(img, cf)
}

func baseNames(paths []string) []string {
	var out []string
	for _, p := range paths {
		out = append(out, filepath.Base(p))
	}
	slices.Sort(out)
	return out
}

// baseLayer holds what a non-root process expects of a root file system: user
// and group names for uid 0 and 65532, a home for nonroot, a world-writable /tmp.
func baseLayer() *layerSet {
	s := newLayerSet()
	nr := strconv.Itoa(NonRootUID)
	must(s.add(entry{Path: "/etc/passwd", Mode: 0o644, Data: []byte(
		"root:x:0:0:root:/root:/sbin/nologin\n" +
			"nonroot:x:" + nr + ":" + nr + ":nonroot:/home/nonroot:/sbin/nologin\n")}))
	must(s.add(entry{Path: "/etc/group", Mode: 0o644, Data: []byte("root:x:0:\nnonroot:x:" + nr + ":\n")}))
	must(s.add(entry{Path: "/home/nonroot", Mode: fs.ModeDir | 0o700, UID: NonRootUID, GID: NonRootUID}))
	must(s.add(entry{Path: "/root", Mode: fs.ModeDir | 0o700}))
	must(s.add(entry{Path: "/tmp", Mode: fs.ModeDir | fs.ModeSticky | 0o777}))
	return s
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}

// iptablesLayer collects iptables from the build machine (see iptablesFiles)
// and returns its version as `xtables-nft-multi --version` would print it.
func iptablesLayer(root, arch string) (*layerSet, string, error) {
	files, links, err := iptablesFiles(root, arch)
	if err != nil {
		return nil, "", err
	}
	set := newLayerSet()
	h, err := newHostFiles(set, root, arch)
	if err != nil {
		return nil, "", err
	}
	for _, f := range files {
		if err := h.add(f); err != nil {
			return nil, "", err
		}
	}
	for _, p := range slices.Sorted(maps.Keys(links)) {
		if err := set.add(entry{Path: p, Mode: fs.ModeSymlink | 0o777, Target: links[p]}); err != nil {
			return nil, "", err
		}
	}
	version, err := iptablesVersion(root)
	if err != nil {
		return nil, "", err
	}
	return set, version, nil
}
