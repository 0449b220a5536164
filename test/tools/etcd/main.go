// Command etcd is a minimal single-member etcd server for the lab, built from
// go.etcd.io/etcd/server/v3/embed so that the test harness needs no etcd release
// download.
//
// A listen URL with port 0 gets a free port picked at start; the client URLs
// actually served are written to --ready-file (one per line) once the server is
// ready, so a caller in another network namespace can find them.
package main

import (
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "etcd:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		name       = flag.String("name", "lab", "member name")
		dataDir    = flag.String("data-dir", "default.etcd", "path to the data directory")
		listenC    = flag.String("listen-client-urls", "http://127.0.0.1:2379", "comma list of URLs to serve clients on (port 0 picks a free port)")
		advertiseC = flag.String("advertise-client-urls", "", "comma list of client URLs to advertise (default: the listen client URLs)")
		listenP    = flag.String("listen-peer-urls", "http://127.0.0.1:0", "comma list of URLs to serve peers on (port 0 picks a free port)")
		logLevel   = flag.String("log-level", "warn", "debug, info, warn, error, panic or fatal")
		readyFile  = flag.String("ready-file", "", "file to write the served client URLs to once ready")
		noFsync    = flag.Bool("unsafe-no-fsync", false, "disable fsync (data loss on crash; fine for throw-away test clusters)")
		quota      = flag.Int64("quota-backend-bytes", 0, "backend size quota (0: etcd default)")
		timeout    = flag.Duration("start-timeout", time.Minute, "how long to wait for the server to become ready")
	)
	flag.Parse()

	lc, err := parseURLs(*listenC)
	if err != nil {
		return fmt.Errorf("--listen-client-urls: %w", err)
	}
	lp, err := parseURLs(*listenP)
	if err != nil {
		return fmt.Errorf("--listen-peer-urls: %w", err)
	}
	ac := lc
	if *advertiseC != "" {
		if ac, err = parseURLs(*advertiseC); err != nil {
			return fmt.Errorf("--advertise-client-urls: %w", err)
		}
	}

	cfg := embed.NewConfig()
	cfg.Name = *name
	cfg.Dir = *dataDir
	cfg.ListenClientUrls = lc
	cfg.AdvertiseClientUrls = ac
	cfg.ListenPeerUrls = lp
	cfg.AdvertisePeerUrls = lp
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.LogLevel = *logLevel
	cfg.LogOutputs = []string{"stderr"}
	cfg.UnsafeNoFsync = *noFsync
	cfg.QuotaBackendBytes = *quota

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return err
	}
	defer e.Close()

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)

	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		return err
	case s := <-sig:
		return fmt.Errorf("got %v before ready", s)
	case <-time.After(*timeout):
		e.Server.Stop()
		return fmt.Errorf("not ready after %v", *timeout)
	}

	if *readyFile != "" {
		var b strings.Builder
		for _, u := range lc {
			b.WriteString(u.String())
			b.WriteByte('\n')
		}
		tmp := *readyFile + ".tmp"
		if err := os.WriteFile(tmp, []byte(b.String()), 0o644); err != nil {
			return err
		}
		if err := os.Rename(tmp, *readyFile); err != nil {
			return err
		}
	}

	select {
	case err := <-e.Err():
		return err
	case <-sig:
		return nil
	}
}

// parseURLs parses a comma list of URLs and replaces port 0 by a free port.
func parseURLs(s string) ([]url.URL, error) {
	var out []url.URL
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		u, err := url.Parse(part)
		if err != nil {
			return nil, err
		}
		if u.Port() == "0" {
			l, err := net.Listen("tcp", u.Host)
			if err != nil {
				return nil, fmt.Errorf("picking a port for %s: %w", part, err)
			}
			u.Host = l.Addr().String()
			l.Close()
		}
		out = append(out, *u)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no URL in %q", s)
	}
	return out, nil
}
