// Command labclean removes what crashed lab runs left behind: every network namespace
// and root-namespace link whose name starts with the lab prefix ("ilb" by default), and
// the processes running in those namespaces. Nothing else is touched.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/ironlb/ironlb/test/lab"
)

func main() {
	prefix := flag.String("prefix", "ilb", "name prefix of the lab namespaces and links to remove")
	flag.Parse()
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "lab-clean: needs root (it deletes network namespaces)")
		os.Exit(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := lab.CleanupPrefix(ctx, *prefix); err != nil {
		fmt.Fprintln(os.Stderr, "lab-clean:", err)
		os.Exit(1)
	}
	fmt.Printf("lab-clean: no namespaces or links named %s* remain\n", *prefix)
}
