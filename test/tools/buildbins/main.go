// Command buildbins builds (or finds in the cache) the lab's kube-apiserver, kube-proxy, etcd
// and podserver binaries and prints their paths, one "name=path" line each:
//
//	cd test && go run ./tools/buildbins
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/ironlb/ironlb/test/cluster"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	b, err := cluster.EnsureBinaries(ctx, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "buildbins:", err)
		os.Exit(1)
	}
	fmt.Printf("kube-apiserver=%s\nkube-proxy=%s\netcd=%s\npodserver=%s\n", b.APIServer, b.KubeProxy, b.Etcd, b.PodServer)
}
