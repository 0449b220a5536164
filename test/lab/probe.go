package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// HTTPGet fetches url with curl from inside host's namespace and returns the
// body. The URL's host must be an IP address in the lab ranges; timeout
// (default 5s, at most 60s) bounds the whole transfer. Non-2xx answers are
// not errors.
func (l *Lab) HTTPGet(ctx context.Context, from, rawURL string, timeout time.Duration) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", fmt.Errorf("lab: bad URL %q: %w", rawURL, err)
	}
	ip, err := netip.ParseAddr(u.Hostname())
	if err != nil {
		return "", fmt.Errorf("lab: URL %q: host must be an IP address", rawURL)
	}
	if err := CheckAddr(ip); err != nil {
		return "", err
	}
	if err := l.checkHost(from); err != nil {
		return "", err
	}
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	timeout = min(timeout, time.Minute)
	ctx, cancel := context.WithTimeout(ctx, timeout+5*time.Second)
	defer cancel()
	argv := append(l.Wrap(from), "curl", "-sS", "-g", "--noproxy", "*",
		"--max-time", strconv.FormatFloat(timeout.Seconds(), 'f', 3, 64), rawURL)
	return runSplit(ctx, argv...)
}

var arpingReply = regexp.MustCompile(`from ([0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}) \(`)

// ARPing sends count (1..100) ARP requests for ip from host's uplink, 250ms
// apart, and returns the distinct MACs that replied, in order of first reply.
// No reply at all is (nil, nil), not an error.
func (l *Lab) ARPing(ctx context.Context, from string, ip netip.Addr, count int) ([]string, error) {
	if err := CheckAddr(ip); err != nil {
		return nil, err
	}
	if !ip.Is4() {
		return nil, fmt.Errorf("lab: ARPing needs an IPv4 address, got %s", ip)
	}
	if count < 1 || count > 100 {
		return nil, fmt.Errorf("lab: ARPing count %d, want 1..100", count)
	}
	if err := l.checkHost(from); err != nil {
		return nil, err
	}
	deadline := int(math.Ceil(float64(count)*0.25)) + 1
	ctx, cancel := context.WithTimeout(ctx, time.Duration(deadline+5)*time.Second)
	defer cancel()
	argv := append(l.Wrap(from), "arping", "-c", strconv.Itoa(count), "-W", "0.25",
		"-w", strconv.Itoa(deadline), "-i", uplink(from), ip.String())
	out, err := run(ctx, argv...)
	var macs []string
	seen := map[string]bool{}
	for _, m := range arpingReply.FindAllStringSubmatch(out, -1) {
		mac := strings.ToLower(m[1])
		if !seen[mac] {
			seen[mac] = true
			macs = append(macs, mac)
		}
	}
	if err != nil && len(macs) == 0 {
		// Exit status 1 with the statistics line: nobody answered.
		if exitCode(err) == 1 && strings.Contains(out, "packets transmitted") {
			return nil, nil
		}
		return nil, err
	}
	return macs, nil
}

// Ping sends count (1..100) ICMP echo requests (IPv4 or IPv6) from host, one
// per 200ms, each waiting at most 1s, and succeeds if any is answered.
func (l *Lab) Ping(ctx context.Context, from string, ip netip.Addr, count int) error {
	if err := CheckAddr(ip); err != nil {
		return err
	}
	if count < 1 || count > 100 {
		return fmt.Errorf("lab: Ping count %d, want 1..100", count)
	}
	if err := l.checkHost(from); err != nil {
		return err
	}
	deadline := int(math.Ceil(float64(count)*0.2)) + 1
	ctx, cancel := context.WithTimeout(ctx, time.Duration(deadline+5)*time.Second)
	defer cancel()
	_, err := run(ctx, append(l.Wrap(from), "ping", "-n", "-q", "-c", strconv.Itoa(count),
		"-i", "0.2", "-W", "1", "-w", strconv.Itoa(deadline), ip.String())...)
	return err
}

// MAC returns the hardware address of ifname in host's namespace.
func (l *Lab) MAC(host, ifname string) (string, error) {
	if err := l.checkHost(host); err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := runSplit(ctx, "ip", "-n", l.Netns(host), "-j", "link", "show", "dev", ifname)
	if err != nil {
		return "", err
	}
	var links []struct {
		Address string `json:"address"`
	}
	if err := json.Unmarshal([]byte(out), &links); err != nil {
		return "", fmt.Errorf("lab: parse ip -j link: %w", err)
	}
	if len(links) != 1 || links[0].Address == "" {
		return "", errors.New("lab: no MAC for " + host + "/" + ifname)
	}
	return strings.ToLower(links[0].Address), nil
}
