// Package e2e proves ironlb against real parts: a kube-apiserver + etcd built from the
// Go module proxy, running in the lab's cp network namespace with RBAC on, and
// ironlb-controller running as the ServiceAccount from deploy/.
package e2e

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/ironlb/ironlb/test/framework"
)

var (
	env  *framework.Env
	ctrl *framework.Controller
)

func TestMain(m *testing.M) {
	if err := framework.CheckHost(); err != nil {
		fmt.Printf("e2e: skipped: %v\n", err)
		os.Exit(0)
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	start := time.Now()
	var err error
	env, err = framework.Up(ctx, framework.Options{Nodes: 3, IPv6: true, Router: true, Log: os.Stderr})
	if err != nil {
		fmt.Printf("e2e: bringing up the lab: %v\n", err)
		return 1
	}
	var pids []int
	fmt.Printf("e2e: lab %s with control plane up in %v\n", env.Lab.Prefix(), time.Since(start).Round(time.Millisecond))
	code := func() int {
		defer env.Down()
		if ctrl, err = env.StartController(ctx); err != nil {
			fmt.Printf("e2e: starting ironlb-controller: %v\n", err)
			return 1
		}
		code := m.Run()
		pids = env.PIDs()
		return code
	}()
	// The lab must leave nothing behind, whatever the tests did.
	if left := env.Leftovers(pids); left != "" {
		fmt.Printf("e2e: FAIL: the lab left %s behind\n", left)
		return 1
	}
	return code
}
