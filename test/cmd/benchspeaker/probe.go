package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/ironlb/ironlb/test/internal/benchlog"
	"golang.org/x/sys/unix"
)

// The probers run inside a lab namespace: benchspeaker starts itself there
// ("benchspeaker probe ...", through lab.Start, so they die with it) and reads
// their JSON report from stdout when they end. Every loop is bounded by
// -duration.

// probeReport is what a prober measured; times are Unix nanoseconds (one
// clock for every process of the machine).
// probingLine is what a prober prints (to stderr) once it runs.
const probingLine = "benchspeaker: probing"

type probeReport struct {
	ARPSent    []int64          `json:"arpSent,omitempty"`
	ARPReplies []arpReply       `json:"arpReplies,omitempty"`
	TCP        []benchlog.Probe `json:"tcp,omitempty"`
	Errors     []string         `json:"errors,omitempty"`
	Streams    []streamProbe    `json:"streams,omitempty"`
}

type arpReply struct {
	T   int64  `json:"t"`
	VIP string `json:"vip"`
	MAC string `json:"mac"`
}

// streamProbe is one long-lived TCP connection sending a request every
// interval: how many answers came back before it broke, and when it broke.
type streamProbe struct {
	Start   int64  `json:"start"`
	Answers int    `json:"answers"`
	Broke   int64  `json:"broke,omitempty"`
	Err     string `json:"err,omitempty"`
}

func runProbe(args []string) error {
	fs := flag.NewFlagSet("probe", flag.ContinueOnError)
	iface := fs.String("iface", "lan0", "interface for ARP")
	arpVIPs := fs.String("arp", "", "comma-separated IPv4 VIPs to ask for by ARP every interval")
	tcpTarget := fs.String("tcp", "", "VIP:port to open a new TCP connection to every interval (HTTP GET)")
	streams := fs.Int("streams", 0, "also keep this many TCP connections open to -tcp, each sending one request per interval (at most 64)")
	interval := fs.Duration("interval", 10*time.Millisecond, "probe interval")
	duration := fs.Duration("duration", 5*time.Second, "how long to probe (at most 60s)")
	timeout := fs.Duration("timeout", time.Second, "a TCP probe without an answer within this is lost")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *duration > time.Minute {
		return errors.New("probe: -duration at most 60s")
	}
	if *streams < 0 || *streams > 64 {
		return errors.New("probe: -streams must be 0-64")
	}
	ctx, cancel := context.WithTimeout(context.Background(), *duration)
	defer cancel()
	// benchspeaker waits for this line before it acts: starting a process in
	// a namespace can take a second on a loaded machine.
	fmt.Fprintln(os.Stderr, probingLine)
	var rep probeReport
	var mu sync.Mutex
	var wg sync.WaitGroup
	if *arpVIPs != "" {
		var vips []netip.Addr
		for _, s := range strings.Split(*arpVIPs, ",") {
			a, err := netip.ParseAddr(s)
			if err != nil || !a.Is4() {
				return fmt.Errorf("probe: bad -arp address %q", s)
			}
			vips = append(vips, a)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sent, replies, err := probeARP(ctx, *iface, vips, *interval)
			mu.Lock()
			rep.ARPSent, rep.ARPReplies = sent, replies
			if err != nil {
				rep.Errors = append(rep.Errors, err.Error())
			}
			mu.Unlock()
		}()
	}
	if *tcpTarget != "" {
		wg.Add(1)
		go func() {
			defer wg.Done()
			probes := benchlog.ProbeEvery(ctx, *interval, func() error { return httpOnce(*tcpTarget, *timeout) })
			mu.Lock()
			rep.TCP = probes
			mu.Unlock()
		}()
		rep.Streams = make([]streamProbe, *streams)
		for i := range *streams {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sp := probeStream(ctx, *tcpTarget, *interval, *timeout)
				mu.Lock()
				rep.Streams[i] = sp
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	return json.NewEncoder(os.Stdout).Encode(rep)
}

// probeARP broadcasts an ARP request for each VIP every interval on iface and
// records every reply for one of them.
func probeARP(ctx context.Context, iface string, vips []netip.Addr, interval time.Duration) ([]int64, []arpReply, error) {
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return nil, nil, err
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return nil, nil, err
	}
	var src netip.Addr
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Is4() {
			src = p.Addr()
			break
		}
	}
	if !src.IsValid() {
		return nil, nil, fmt.Errorf("no IPv4 address on %s", iface)
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(htons(unix.ETH_P_ARP)))
	if err != nil {
		return nil, nil, fmt.Errorf("packet socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: ifi.Index}); err != nil {
		return nil, nil, err
	}
	tv := unix.NsecToTimeval(int64(5 * time.Millisecond))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return nil, nil, err
	}
	want := map[netip.Addr]bool{}
	for _, v := range vips {
		want[v] = true
	}
	var replies []arpReply
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for ctx.Err() == nil {
			n, _, err := unix.Recvfrom(fd, buf, 0)
			if err != nil || n < 42 {
				continue
			}
			now := time.Now().UnixNano()
			f := buf[:n]
			if binary.BigEndian.Uint16(f[12:14]) != unix.ETH_P_ARP || binary.BigEndian.Uint16(f[20:22]) != 2 {
				continue
			}
			spa := netip.AddrFrom4([4]byte(f[28:32]))
			if !want[spa] {
				continue
			}
			replies = append(replies, arpReply{T: now, VIP: spa.String(), MAC: net.HardwareAddr(f[22:28]).String()})
		}
	}()
	var sent []int64
	frame := make([]byte, 42)
	copy(frame[0:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(frame[6:12], ifi.HardwareAddr)
	binary.BigEndian.PutUint16(frame[12:14], unix.ETH_P_ARP)
	binary.BigEndian.PutUint16(frame[14:16], 1)      // Ethernet
	binary.BigEndian.PutUint16(frame[16:18], 0x0800) // IPv4
	frame[18], frame[19] = 6, 4
	binary.BigEndian.PutUint16(frame[20:22], 1) // request
	copy(frame[22:28], ifi.HardwareAddr)
	s4 := src.As4()
	copy(frame[28:32], s4[:])
	to := &unix.SockaddrLinklayer{Ifindex: ifi.Index, Halen: 6, Protocol: htons(unix.ETH_P_ARP)}
	copy(to.Addr[:], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var sendErr error
	for ctx.Err() == nil {
		sent = append(sent, time.Now().UnixNano())
		for _, v := range vips {
			t4 := v.As4()
			copy(frame[38:42], t4[:])
			if err := unix.Sendto(fd, frame, 0, to); err != nil && sendErr == nil {
				sendErr = err
			}
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
	<-done
	return sent, replies, sendErr
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// httpOnce opens a new connection to target and asks for "/", within timeout.
func httpOnce(target string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	c, err := net.DialTimeout("tcp", target, timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(deadline)
	if _, err := c.Write([]byte("GET / HTTP/1.0\r\nHost: vip\r\n\r\n")); err != nil {
		return err
	}
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "HTTP/1.") || !strings.Contains(line, " 200 ") {
		return fmt.Errorf("answer %q", strings.TrimSpace(line))
	}
	return nil
}

// probeStream keeps one keep-alive connection and sends a request every
// interval until the connection breaks or the duration ends.
func probeStream(ctx context.Context, target string, interval, timeout time.Duration) streamProbe {
	var sp streamProbe
	sp.Start = time.Now().UnixNano()
	// A patient dial: the stream's setup is not what is measured (its SYN
	// may wait for the client's ARP resolution).
	c, err := net.DialTimeout("tcp", target, 3*timeout)
	if err != nil {
		sp.Err, sp.Broke = err.Error(), time.Now().UnixNano()
		return sp
	}
	defer c.Close()
	r := bufio.NewReader(c)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for ctx.Err() == nil {
		_ = c.SetDeadline(time.Now().Add(timeout))
		if _, err := c.Write([]byte("GET / HTTP/1.1\r\nHost: vip\r\n\r\n")); err != nil {
			sp.Err, sp.Broke = err.Error(), time.Now().UnixNano()
			return sp
		}
		if err := readHTTPResponse(r); err != nil {
			sp.Err, sp.Broke = err.Error(), time.Now().UnixNano()
			return sp
		}
		sp.Answers++
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
	return sp
}

// readHTTPResponse reads one HTTP/1.1 response with a Content-Length body.
func readHTTPResponse(r *bufio.Reader) error {
	status, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.Contains(status, " 200 ") {
		return fmt.Errorf("answer %q", strings.TrimSpace(status))
	}
	length := -1
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return err
		}
		line = strings.TrimSpace(line)
		if line == "" {
			break
		}
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, "Content-Length") {
			fmt.Sscanf(strings.TrimSpace(v), "%d", &length)
		}
	}
	if length < 0 {
		return errors.New("no Content-Length")
	}
	_, err = r.Discard(length)
	return err
}
