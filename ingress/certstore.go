package ingress

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net/netip"
	"strings"
	"time"
)

// ParseCertificate reads the tls.crt (certificate chain, leaf first) and tls.key of a
// kubernetes.io/tls Secret. The result has Leaf set.
func ParseCertificate(certPEM, keyPEM []byte) (*tls.Certificate, error) {
	if len(certPEM) == 0 || len(keyPEM) == 0 {
		return nil, errors.New("tls.crt or tls.key is empty")
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("tls.crt/tls.key: %w", err)
	}
	if c.Leaf == nil {
		if c.Leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return nil, fmt.Errorf("tls.crt: %w", err)
		}
	}
	return &c, nil
}

// certEntry is the certificate of one TLS host. cert is nil when the host's Secret is
// missing or unusable: the host still counts as a TLS host (ssl-redirect applies, as
// in ingress-nginx) and is served the default certificate.
type certEntry struct {
	cert    *tls.Certificate
	secret  SecretKey
	ingress string
}

// certStore maps TLS server names to certificates: exact names, then "*." wildcards of
// one label, then the default.
type certStore struct {
	exact    map[string]*certEntry // by host
	wildcard map[string]*certEntry // "*.foo.com" by "foo.com"
	def      *tls.Certificate
}

func (s *certStore) lookup(host string) *certEntry {
	if e := s.exact[host]; e != nil {
		return e
	}
	if i := strings.IndexByte(host, '.'); i > 0 {
		return s.wildcard[host[i+1:]]
	}
	return nil
}

// Certificate returns the certificate for a TLS ClientHello's server name (any case):
// the certificate of the Ingress TLS host that matches it exactly, else of a matching
// "*." wildcard host, else the Input's DefaultCertificate (nil when it had none).
func (t *Table) Certificate(serverName string) *tls.Certificate {
	if e := t.certs.lookup(canonicalHost(serverName)); e != nil && e.cert != nil {
		return e.cert
	}
	return t.certs.def
}

// HasTLS reports whether an Ingress lists host (any case, with or without port) in a
// TLS section, directly or through a "*." wildcard, or whether a TLS certificate of an
// Ingress with a rule for host covers it. ssl-redirect applies to such hosts.
func (t *Table) HasTLS(host string) bool { return t.certs.lookup(canonicalHost(host)) != nil }

// addTLS fills the certificate store. Hosts listed in spec.tls come first, oldest
// Ingress first; a host listed by two Ingresses with different Secrets keeps the older
// one. Then, as ingress-nginx does, a rule host that no TLS section lists gets the first
// certificate of its own Ingress that covers it.
func (b *builder) addTLS(parsed []parsedIngress) {
	for _, p := range parsed {
		ing := p.ing
		for i, t := range ing.TLS {
			if len(t.Hosts) == 0 {
				continue // used below for the rule hosts its certificate covers
			}
			key := SecretKey{Namespace: ing.Namespace, Name: t.SecretName}
			cert := b.secret(ing, key, fmt.Sprintf("spec.tls[%d]", i))
			for _, h := range t.Hosts {
				b.addCert(ing, strings.ToLower(h), key, cert, true)
			}
		}
	}
	for _, p := range parsed {
		ing := p.ing
		for _, rule := range ing.Rules {
			h := strings.ToLower(rule.Host)
			if h == "" || b.t.certs.exactEntry(h) != nil {
				continue
			}
			for _, t := range ing.TLS {
				key := SecretKey{Namespace: ing.Namespace, Name: t.SecretName}
				cert := b.in.Certificates[key]
				if cert != nil && cert.Leaf.VerifyHostname(h) == nil {
					b.addCert(ing, h, key, cert, false)
					break
				}
			}
		}
	}
	// TLS sections without hosts whose certificate covers none of the rule hosts are
	// still checked, so a missing Secret is reported.
	for _, p := range parsed {
		for i, t := range p.ing.TLS {
			if len(t.Hosts) == 0 {
				b.secret(p.ing, SecretKey{Namespace: p.ing.Namespace, Name: t.SecretName}, fmt.Sprintf("spec.tls[%d]", i))
			}
		}
	}
}

func (s *certStore) exactEntry(h string) *certEntry {
	if strings.HasPrefix(h, "*.") {
		return s.wildcard[h[2:]]
	}
	return s.exact[h]
}

// secret returns a referenced Secret's certificate, reporting a missing or bad one.
func (b *builder) secret(ing *Ingress, key SecretKey, where string) *tls.Certificate {
	if key.Name == "" {
		b.report(ing, ReasonSecretMissing, "%s: no secretName; its hosts get the default certificate", where)
		return nil
	}
	if c := b.in.Certificates[key]; c != nil {
		return c
	}
	if err := b.in.SecretErrors[key]; err != nil {
		b.report(ing, ReasonSecretInvalid, "%s: Secret %s: %v; its hosts get the default certificate", where, key.Name, err)
		return nil
	}
	b.report(ing, ReasonSecretMissing, "%s: Secret %s of type kubernetes.io/tls not found in namespace %s; its hosts get the default certificate",
		where, key.Name, key.Namespace)
	return nil
}

// addCert records host -> certificate; explicit says the host was listed in spec.tls.
func (b *builder) addCert(ing *Ingress, h string, key SecretKey, cert *tls.Certificate, explicit bool) {
	m, k := b.t.certs.exact, h
	if strings.HasPrefix(h, "*.") {
		m, k = b.t.certs.wildcard, h[2:]
	}
	if !validHost(k) {
		b.report(ing, ReasonInvalidRule, "TLS host %q is not a DNS name or a \"*.\" wildcard of one", h)
		return
	}
	if old := m[k]; old != nil {
		if old.secret != key {
			b.report(ing, ReasonTLSConflict, "TLS host %s: Secret %s is not used; Ingress %s (older) serves Secret %s for it",
				h, key.Name, old.ingress, old.secret)
		}
		return
	}
	if cert != nil && explicit && cert.Leaf.VerifyHostname(h) != nil {
		b.report(ing, ReasonCertificateMismatch, "TLS host %s: the certificate of Secret %s does not cover it; the default certificate is served for it",
			h, key.Name)
		cert = nil
	}
	m[k] = &certEntry{cert: cert, secret: key, ingress: ing.Key()}
}

// SelfSigned makes a self-signed ECDSA P-256 certificate for names (DNS names or IP
// addresses), valid from an hour ago for validity. The proxy uses one as the default
// certificate when none is configured, as ingress-nginx does ("Kubernetes Ingress
// Controller Fake Certificate").
func SelfSigned(validity time.Duration, names ...string) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating a key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("generating a serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "ironlb-ingress default certificate"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	if len(names) > 0 {
		tmpl.Subject.CommonName = names[0]
	}
	for _, n := range names {
		if a, err := netip.ParseAddr(n); err == nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, a.AsSlice())
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("signing: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parsing what was signed: %w", err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}
