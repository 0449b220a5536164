package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/ironlb/ironlb/test/framework"
	"github.com/ironlb/ironlb/test/lab"
)

// nginx is Debian's nginx in a pod namespace, the yardstick: every change of
// routes or endpoints is a new nginx.conf and a reload (SIGHUP to the master),
// as a controller built on plain nginx does it.
type nginx struct {
	env     *framework.Env
	pod     lab.Pod
	dir     string
	conf    string
	p       *lab.Process
	reloads int
}

// startNginx runs nginx (master and 2 workers, in the foreground) in a new pod
// namespace on node, serving r with the certificates in certs (name -> PEM
// certificate and key), and waits until it answers.
func startNginx(ctx context.Context, env *framework.Env, node int, r *routes, certs map[string][2][]byte) (*nginx, error) {
	pod, err := env.AddPod(ctx, node, "nginx")
	if err != nil {
		return nil, err
	}
	n := &nginx{env: env, pod: pod, dir: filepath.Join(env.Lab.Dir(), "nginx")}
	n.conf = filepath.Join(n.dir, "nginx.conf")
	if err := os.MkdirAll(n.dir, 0o755); err != nil {
		return nil, err
	}
	for name, c := range certs {
		if err := os.WriteFile(filepath.Join(n.dir, name+".crt"), c[0], 0o644); err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(n.dir, name+".key"), c[1], 0o600); err != nil {
			return nil, err
		}
	}
	if err := n.write(r); err != nil {
		return nil, err
	}
	if out, err := env.Lab.Exec(ctx, pod.Host, "nginx", "-t", "-q", "-p", n.dir, "-e", "stderr", "-c", n.conf); err != nil {
		return nil, fmt.Errorf("nginx -t: %w: %s", err, out)
	}
	n.p, err = env.Lab.Start(pod.Host, filepath.Join(env.Lab.Dir(), "nginx.log"),
		"nginx", "-p", n.dir, "-e", "stderr", "-c", n.conf, "-g", "daemon off;")
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	for {
		if _, err := env.Lab.HTTPGet(wctx, env.Lab.NodeName(node), "http://"+pod.IP.String()+"/", time.Second); err == nil {
			return n, nil
		}
		select {
		case <-n.p.Done():
			return nil, fmt.Errorf("nginx exited: %v: %s", n.p.Err(), n.p.Tail(2000))
		case <-wctx.Done():
			return nil, fmt.Errorf("nginx not answering: %s", n.p.Tail(2000))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// write replaces nginx.conf atomically.
func (n *nginx) write(r *routes) error {
	tmp := n.conf + ".tmp"
	if err := os.WriteFile(tmp, []byte(r.nginxConf(n.dir)), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, n.conf)
}

// apply serves r from now on: a new nginx.conf and a reload.
func (n *nginx) apply(r *routes) error {
	if err := n.write(r); err != nil {
		return err
	}
	n.reloads++
	if err := syscall.Kill(n.p.Pid(), syscall.SIGHUP); err != nil {
		return fmt.Errorf("reloading nginx: %w", err)
	}
	return nil
}

// errorLog is what nginx logged at warn level or worse.
func (n *nginx) errorLog() string {
	var out []string
	for _, l := range strings.Split(n.p.Tail(1<<20), "\n") {
		if strings.Contains(l, "[error]") || strings.Contains(l, "[crit]") || strings.Contains(l, "[alert]") || strings.Contains(l, "[emerg]") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
