package ingress

import (
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"slices"
	"testing"
	"time"
)

func cert(t *testing.T, names ...string) *tls.Certificate {
	t.Helper()
	c, err := SelfSigned(time.Hour, names...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCertificateStore(t *testing.T) {
	a, a2, w, g, def := cert(t, "a.com"), cert(t, "a.com"), cert(t, "*.w.com"), cert(t, "g.com"), cert(t)
	sk := func(name string) SecretKey { return SecretKey{Namespace: "ns", Name: name} }
	tlsIng := func(name string, created time.Time, hosts []string, secret string, ruleHosts ...string) Ingress {
		ing := Ingress{Namespace: "ns", Name: name, Created: created, TLS: []TLS{{Hosts: hosts, SecretName: secret}}}
		for _, h := range ruleHosts {
			ing.Rules = append(ing.Rules, Rule{Host: h, Paths: []Path{prefix("/")}})
		}
		return ing
	}
	tab, problems := Build(Input{
		Ingresses: []Ingress{
			tlsIng("e", t0.Add(time.Minute), []string{"a.com"}, "a2"),
			tlsIng("a", t0, []string{"A.com"}, "a", "a.com"),
			tlsIng("b", t0, []string{"*.w.com"}, "w", "*.w.com"),
			tlsIng("c", t0, []string{"c.com"}, "missing", "c.com"),
			tlsIng("d", t0, []string{"d.com"}, "broken"),
			tlsIng("f", t0, []string{"f.com"}, "a"),
			tlsIng("g", t0, nil, "g", "g.com", "h.com"),
		},
		Certificates:       map[SecretKey]*tls.Certificate{sk("a"): a, sk("a2"): a2, sk("w"): w, sk("g"): g},
		SecretErrors:       map[SecretKey]error{sk("broken"): errors.New("tls.key: no PEM data")},
		DefaultCertificate: def,
	})
	want := []string{"ns/c:SecretMissing", "ns/d:SecretInvalid", "ns/f:CertificateMismatch", "ns/e:TLSConflict"}
	if got := reasons(problems); !slices.Equal(got, want) {
		t.Errorf("problems = %v, want %v", got, want)
	}
	for _, tc := range []struct {
		sni  string
		want *tls.Certificate
		tls  bool
	}{
		{"a.com", a, true}, {"A.COM", a, true},
		{"x.w.com", w, true}, {"y.x.w.com", def, false}, {"w.com", def, false},
		{"c.com", def, true}, // missing Secret: default certificate, still a TLS host (redirected)
		{"d.com", def, true},
		{"f.com", def, true},
		{"g.com", g, true},    // not listed, but its Ingress's certificate covers it
		{"h.com", def, false}, // not covered by any certificate of its Ingress
		{"", def, false}, {"unknown.org", def, false},
	} {
		if got := tab.Certificate(tc.sni); got != tc.want {
			t.Errorf("Certificate(%q) = %v, want %v", tc.sni, names(got), names(tc.want))
		}
		if got := tab.HasTLS(tc.sni); got != tc.tls {
			t.Errorf("HasTLS(%q) = %v, want %v", tc.sni, got, tc.tls)
		}
	}

	// Without a default in the Input, unknown names get nil (the proxy's own default).
	tab, _ = Build(Input{})
	if tab.Certificate("x") != nil {
		t.Error("an empty Table has a certificate")
	}
}

func names(c *tls.Certificate) []string {
	if c == nil {
		return nil
	}
	return append(c.Leaf.DNSNames, c.Leaf.Subject.CommonName)
}

func TestParseCertificate(t *testing.T) {
	c := cert(t, "a.com")
	other := cert(t, "b.com")
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]})
	keyPEM := func(c *tls.Certificate) []byte {
		der, err := x509.MarshalECPrivateKey(c.PrivateKey.(*ecdsa.PrivateKey))
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
	}
	got, err := ParseCertificate(certPEM, keyPEM(c))
	if err != nil {
		t.Fatal(err)
	}
	if got.Leaf == nil || got.Leaf.VerifyHostname("a.com") != nil {
		t.Errorf("parsed certificate does not cover a.com: %v", names(got))
	}
	for name, in := range map[string][2][]byte{
		"empty":      {nil, keyPEM(c)},
		"garbage":    {[]byte("not pem"), keyPEM(c)},
		"wrong key":  {certPEM, keyPEM(other)},
		"key as crt": {keyPEM(c), keyPEM(c)},
	} {
		if _, err := ParseCertificate(in[0], in[1]); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
