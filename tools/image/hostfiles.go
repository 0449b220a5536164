package main

import (
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
)

// hostFiles copies files of the build machine into a layer the way the dynamic
// loader will find them in the image: every symlink on the way to a file (e.g.
// Debian's /lib -> usr/lib) is reproduced as a symlink, the file itself is
// copied, and for a dynamically linked ELF file its interpreter and the shared
// libraries it needs (DT_NEEDED, searched in the loader's default directories)
// are added the same way, recursively.
type hostFiles struct {
	set *layerSet
	// root is prefixed to every host path that is read (a fake file system in
	// tests; "" on a real build).
	root string
	// libDirs are the loader's default search directories, in order.
	libDirs []string
	seen    map[string]bool
}

// multiarchTriplets are Debian's library directory names per GOARCH.
var multiarchTriplets = map[string]string{
	"amd64":   "x86_64-linux-gnu",
	"arm64":   "aarch64-linux-gnu",
	"arm":     "arm-linux-gnueabihf",
	"ppc64le": "powerpc64le-linux-gnu",
	"s390x":   "s390x-linux-gnu",
	"riscv64": "riscv64-linux-gnu",
	"386":     "i386-linux-gnu",
}

func newHostFiles(set *layerSet, root, goarch string) (*hostFiles, error) {
	t, ok := multiarchTriplets[goarch]
	if !ok {
		return nil, fmt.Errorf("image: no library directories known for GOARCH %s", goarch)
	}
	return &hostFiles{
		set:     set,
		root:    root,
		libDirs: []string{"/lib/" + t, "/usr/lib/" + t, "/lib64", "/usr/lib64", "/lib", "/usr/lib"},
		seen:    map[string]bool{},
	}, nil
}

// maxLinks bounds symlink chains like the kernel's 40.
const maxLinks = 40

// add copies host path p (absolute) into the layer with its symlinks and, for
// ELF files, its loader and libraries.
func (h *hostFiles) add(p string) error {
	return h.addDepth(p, 0)
}

func (h *hostFiles) addDepth(p string, links int) error {
	if !path.IsAbs(p) {
		return fmt.Errorf("image: host path %q is not absolute", p)
	}
	p = path.Clean(p)
	if h.seen[p] {
		return nil
	}
	if err := h.addUnseen(p, links); err != nil {
		return err
	}
	h.seen[p] = true // only once complete: a symlink loop still reaches maxLinks
	return nil
}

func (h *hostFiles) addUnseen(p string, links int) error {
	// Walk the components; the first symlink found is recorded, and the rest of
	// the path is followed from its target.
	parts := strings.Split(strings.TrimPrefix(p, "/"), "/")
	for i := range parts {
		prefix := "/" + strings.Join(parts[:i+1], "/")
		fi, err := os.Lstat(h.root + prefix)
		if err != nil {
			return fmt.Errorf("image: host file %s: %w", p, err)
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			continue
		}
		if links >= maxLinks {
			return fmt.Errorf("image: host file %s: too many levels of symbolic links", p)
		}
		target, err := os.Readlink(h.root + prefix)
		if err != nil {
			return err
		}
		if err := h.set.add(entry{Path: prefix, Mode: fs.ModeSymlink | 0o777, Target: target}); err != nil {
			return err
		}
		resolved := target
		if !path.IsAbs(target) {
			resolved = path.Join(path.Dir(prefix), target)
		}
		rest := strings.Join(parts[i+1:], "/")
		return h.addDepth(path.Join(resolved, rest), links+1)
	}
	fi, err := os.Stat(h.root + p)
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return fmt.Errorf("image: host path %s is a directory; name its files", p)
	}
	data, err := os.ReadFile(h.root + p)
	if err != nil {
		return err
	}
	if err := h.set.add(entry{Path: p, Mode: fi.Mode().Perm(), Data: data}); err != nil {
		return err
	}
	interp, needed, err := elfDeps(h.root + p)
	if err != nil || (interp == "" && len(needed) == 0) {
		return err // not ELF or static: nothing more to add
	}
	if interp != "" {
		if err := h.addDepth(interp, links); err != nil {
			return fmt.Errorf("image: loader of %s: %w", p, err)
		}
	}
	for _, lib := range needed {
		found, err := h.findLib(lib)
		if err != nil {
			return fmt.Errorf("image: %s needs %s: %w", p, lib, err)
		}
		if err := h.addDepth(found, links); err != nil {
			return err
		}
	}
	return nil
}

// findLib returns the first of the loader's default directories holding lib.
func (h *hostFiles) findLib(lib string) (string, error) {
	if strings.Contains(lib, "/") {
		return lib, nil
	}
	for _, d := range h.libDirs {
		p := d + "/" + lib
		if _, err := os.Stat(h.root + p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("not found in %s", strings.Join(h.libDirs, ", "))
}

// elfDeps returns the interpreter (PT_INTERP) and DT_NEEDED libraries of an ELF
// file; a file that is not ELF gives neither and no error.
func elfDeps(file string) (interp string, needed []string, err error) {
	if ok, err := isELF(file); err != nil || !ok {
		return "", nil, err
	}
	f, err := elf.Open(file)
	if err != nil {
		return "", nil, err
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			b := make([]byte, prog.Filesz)
			if _, err := prog.ReadAt(b, 0); err != nil {
				return "", nil, fmt.Errorf("%s: reading PT_INTERP: %w", file, err)
			}
			interp = strings.TrimRight(string(b), "\x00")
		}
	}
	needed, err = f.ImportedLibraries()
	if err != nil {
		return "", nil, fmt.Errorf("%s: %w", file, err)
	}
	return interp, needed, nil
}

// isELF reports whether file starts with the ELF magic number.
func isELF(file string) (bool, error) {
	f, err := os.Open(file)
	if err != nil {
		return false, err
	}
	defer f.Close()
	magic := make([]byte, len(elf.ELFMAG))
	if _, err := io.ReadFull(f, magic); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return false, nil
		}
		return false, err
	}
	return string(magic) == elf.ELFMAG, nil
}

// binaryArch returns the GOARCH of an ELF executable and an error unless it is
// statically linked (no loader, no shared libraries): the image's own binaries
// must run without anything else from the build machine.
func binaryArch(file string) (string, error) {
	f, err := elf.Open(file)
	if err != nil {
		return "", fmt.Errorf("image: %s: %w", file, err)
	}
	defer f.Close()
	interp, needed, err := elfDeps(file)
	if err != nil {
		return "", err
	}
	if interp != "" || len(needed) > 0 {
		return "", fmt.Errorf("image: %s is dynamically linked (loader %q, libraries %v): build it with CGO_ENABLED=0", file, interp, needed)
	}
	arch, ok := elfArch[f.Machine]
	if !ok {
		return "", fmt.Errorf("image: %s: unsupported machine %v", file, f.Machine)
	}
	return arch, nil
}

var elfArch = map[elf.Machine]string{
	elf.EM_X86_64:  "amd64",
	elf.EM_AARCH64: "arm64",
	elf.EM_ARM:     "arm",
	elf.EM_PPC64:   "ppc64le",
	elf.EM_S390:    "s390x",
	elf.EM_RISCV:   "riscv64",
	elf.EM_386:     "386",
}

// iptablesFiles are the host paths and image symlinks that give the speaker's
// proxy (which runs iptables-restore, iptables-save, ip6tables-...) Debian's
// iptables with the nf_tables backend: the multi-call binary, every match and
// target extension it can dlopen, and the command names pointing at it (not
// through /etc/alternatives, so the image never depends on the build machine's
// choice of backend).
func iptablesFiles(root, goarch string) (files []string, links map[string]string, err error) {
	t, ok := multiarchTriplets[goarch]
	if !ok {
		return nil, nil, fmt.Errorf("image: no library directories known for GOARCH %s", goarch)
	}
	const multi = "/usr/sbin/xtables-nft-multi"
	if _, err := os.Stat(root + multi); err != nil {
		return nil, nil, fmt.Errorf("image: --iptables needs Debian's iptables on the build machine (apt-get install iptables): %w", err)
	}
	files = []string{multi}
	exts, err := filepath.Glob(root + "/usr/lib/" + t + "/xtables/*.so")
	if err != nil {
		return nil, nil, err
	}
	if len(exts) == 0 {
		return nil, nil, fmt.Errorf("image: no iptables extensions in /usr/lib/%s/xtables", t)
	}
	for _, e := range exts {
		files = append(files, strings.TrimPrefix(e, root))
	}
	links = map[string]string{}
	for _, fam := range []string{"iptables", "ip6tables"} {
		for _, suffix := range []string{"", "-restore", "-save"} {
			links["/usr/sbin/"+fam+suffix] = "xtables-nft-multi"
			links["/usr/sbin/"+fam+"-nft"+suffix] = "xtables-nft-multi"
		}
	}
	return files, links, nil
}

// iptablesVersion is the Debian version of the build machine's iptables package
// (recorded in a label: the layer's content depends on it). With a fake root
// (tests) there is no package database to ask.
func iptablesVersion(root string) (string, error) {
	if root != "" {
		return "unknown", nil
	}
	out, err := exec.Command("dpkg-query", "-W", "-f=${Version}", "iptables").Output()
	if err != nil {
		return "", fmt.Errorf("image: asking dpkg for the iptables version: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}
