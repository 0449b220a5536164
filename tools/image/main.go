// Command image builds ironlb's container image without a container daemon:
// one OCI image holding the static ironlb binaries (ironlb-controller,
// ironlb-ingress, ironlb-speaker, ironlb), and, for the speaker's iptables proxy,
// Debian's iptables (nf_tables backend) with exactly the libraries it loads.
//
//	make image                      # builds the binaries and runs this tool
//	go run . --tag REF --out ironlb.tar [--iptables] [--push] BINARY...
//
// The result is reproducible: layers are written by this process (entries
// sorted, owned by root unless stated, every time set to --epoch, default
// $SOURCE_DATE_EPOCH or 0) and compressed once with a fixed gzip level, so the
// same binaries (and the same iptables package) give the same image digest on
// any machine. Binaries must be static (CGO_ENABLED=0); build them with
// -trimpath so that the checkout's path does not end up inside them.
//
// The image runs as user 65532 ("nonroot") by default; its entrypoint is
// /ironlb-controller (the manifests name the binary of each component).
// --out writes one tar that is an OCI image layout and a `docker save` archive
// at once: `docker load -i`, `podman load -i`, `ctr images import`,
// `kind load image-archive`, `skopeo copy oci-archive:...` all take it.
// --push uploads the image to the --tag reference with the credentials of
// ~/.docker/config.json.
//
// It lives in its own Go module so that go-containerregistry's dependencies
// stay out of ironlb's go.mod.
package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

type labelFlag map[string]string

func (l labelFlag) String() string { return fmt.Sprint(map[string]string(l)) }
func (l labelFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("label %q: want key=value", s)
	}
	l[k] = v
	return nil
}

func run(args []string) error {
	fs := flag.NewFlagSet("image", flag.ContinueOnError)
	tag := fs.String("tag", "ghcr.io/ironlb/ironlb:dev", "image reference written into the archive (and pushed to with --push)")
	out := fs.String("out", "", "write the image as an OCI/docker archive tar to this file")
	push := fs.Bool("push", false, "push the image to --tag")
	withIPTables := fs.Bool("iptables", false, "add iptables (nf_tables) from this Debian machine, for the speaker's proxy")
	entrypoint := fs.String("entrypoint", "/ironlb-controller", "default command of the image")
	defEpoch := int64(0)
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("SOURCE_DATE_EPOCH=%q: %w", s, err)
		}
		defEpoch = v
	}
	epoch := fs.Int64("epoch", defEpoch, "creation time of the image and its files, in seconds since 1970 (default $SOURCE_DATE_EPOCH or 0)")
	labels := labelFlag{}
	fs.Var(labels, "label", "key=value label of the image config (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return fmt.Errorf("name the binaries to put into the image")
	}
	if *out == "" && !*push {
		return fmt.Errorf("nothing to do: give --out and/or --push")
	}
	ref, err := name.NewTag(*tag)
	if err != nil {
		return fmt.Errorf("--tag: %w", err)
	}
	created := time.Unix(*epoch, 0).UTC()
	img, err := build(spec{
		Binaries:   fs.Args(),
		Entrypoint: []string{*entrypoint},
		IPTables:   *withIPTables,
		Created:    created,
		Labels:     labels,
	})
	if err != nil {
		return err
	}
	digest, err := img.Digest()
	if err != nil {
		return err
	}
	if *out != "" {
		if err := writeArchive(*out, img, ref, created); err != nil {
			return err
		}
		fmt.Printf("%s@%s written to %s\n", ref.Name(), digest, *out)
	}
	if *push {
		if err := remote.Write(ref, img, remote.WithAuthFromKeychain(authn.DefaultKeychain)); err != nil {
			return fmt.Errorf("pushing %s: %w", ref, err)
		}
		fmt.Printf("%s@%s pushed\n", ref.Name(), digest)
	}
	return nil
}
