package server

import (
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
)

// client is who a request comes from, as the backend is told in X-Forwarded-*.
type client struct {
	ip    netip.Addr // the client: the peer, or the first untrusted hop of a trusted chain
	xff   string     // X-Forwarded-For to send
	real  string     // X-Real-Ip to send: ip as text
	proto string     // "http" or "https"
	host  string     // X-Forwarded-Host
	port  string     // X-Forwarded-Port
}

// trustedPeer reports whether a peer may set X-Forwarded-* for its clients.
func trustedPeer(trusted []netip.Prefix, a netip.Addr) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// clientOf reads the client of r. Client-supplied X-Forwarded-* are believed only when
// the peer is in trusted; the client is then the right-most address of
// X-Forwarded-For that is not itself trusted (a client cannot forge the hops a trusted
// proxy appended), and the chain is extended with the peer.
func clientOf(r *http.Request, trusted []netip.Prefix) client {
	peer := netip.Addr{}
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		peer = ap.Addr().Unmap()
	}
	c := client{ip: peer, xff: peer.String(), proto: "http", host: r.Host, port: localPort(r)}
	c.real = c.xff
	if r.TLS != nil {
		c.proto = "https"
	}
	if !peer.IsValid() || len(trusted) == 0 || !trustedPeer(trusted, peer) {
		return c
	}
	if prior := r.Header.Values("X-Forwarded-For"); len(prior) > 0 {
		chain := strings.Join(prior, ", ")
		c.xff = chain + ", " + c.xff
		hops := strings.Split(chain, ",")
		for i := len(hops) - 1; i >= 0; i-- {
			a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
			if err != nil {
				break // an unparsable hop ends what can be believed
			}
			c.ip = a.Unmap()
			if !trustedPeer(trusted, c.ip) {
				break
			}
		}
		c.real = c.ip.String()
	}
	if p := strings.ToLower(strings.TrimSpace(firstValue(r.Header.Get("X-Forwarded-Proto")))); p == "http" || p == "https" {
		c.proto = p
	}
	if h := firstValue(r.Header.Get("X-Forwarded-Host")); h != "" {
		c.host = h
	}
	if p := firstValue(r.Header.Get("X-Forwarded-Port")); p != "" {
		if _, err := strconv.ParseUint(p, 10, 16); err == nil {
			c.port = p
		}
	}
	return c
}

// firstValue is the first element of a comma list (proxies append to these headers).
func firstValue(v string) string {
	v, _, _ = strings.Cut(v, ",")
	return strings.TrimSpace(v)
}

func localPort(r *http.Request) string {
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(*net.TCPAddr); ok {
		return strconv.Itoa(a.Port)
	}
	return ""
}

// setForwarded writes the X-Forwarded-* headers of c on an outgoing request (whose
// incoming X-Forwarded-For, -Host and -Proto were already removed). The keys are
// written in canonical form directly: this runs for every request.
func setForwarded(h http.Header, c *client) {
	h["X-Forwarded-For"] = []string{c.xff}
	h["X-Real-Ip"] = []string{c.real}
	proto := []string{c.proto}
	h["X-Forwarded-Proto"] = proto
	h["X-Forwarded-Scheme"] = proto
	h["X-Scheme"] = proto
	h["X-Forwarded-Host"] = []string{c.host}
	if c.port != "" {
		h["X-Forwarded-Port"] = []string{c.port}
	} else {
		delete(h, "X-Forwarded-Port")
	}
}
