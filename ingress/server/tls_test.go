package server

import (
	"crypto/tls"
	"net/http"
	"testing"

	"github.com/ironlb/ironlb/ingress"
)

// TestTLSBySNIAndRedirect: two hosts on one 443 told apart by SNI, the default
// certificate for other names, HTTP/2, and ssl-redirect / force-ssl-redirect.
func TestTLSBySNIAndRedirect(t *testing.T) {
	def := mustCert(t, "default.example")
	l := newLab(t, Options{DefaultCertificate: def})
	b := startBackend(t, "b", nil)
	certA, certB := mustCert(t, "a.example"), mustCert(t, "b.example")
	secrets := map[ingress.SecretKey]*tls.Certificate{{Namespace: "web", Name: "a-tls"}: certA, {Namespace: "web", Name: "b-tls"}: certB}
	withTLS := func(name, host, secret string, ann map[string]string) ingress.Ingress {
		ing := simpleIngress(name, host, "b", ann)
		ing.TLS = []ingress.TLS{{Hosts: []string{host}, SecretName: secret}}
		return ing
	}
	l.update(ingress.Input{
		Ingresses: []ingress.Ingress{
			withTLS("a", "a.example", "a-tls", nil),
			withTLS("b", "b.example", "b-tls", map[string]string{ingress.AnnotationPrefix + "ssl-redirect": "false"}),
			simpleIngress("plain", "plain.example", "b", nil),
			simpleIngress("forced", "forced.example", "b", map[string]string{ingress.AnnotationPrefix + "force-ssl-redirect": "true"}),
		},
		Endpoints:    endpoints(map[string][]*backend{"b": {b}}),
		Certificates: secrets,
	})

	for _, tc := range []struct{ sni, want string }{
		{"a.example", "a.example"}, {"b.example", "b.example"}, {"other.example", "default.example"},
	} {
		c := l.client(clientOpts{serverName: tc.sni})
		res, e := l.do(c, "GET", "https://"+tc.sni+"/", nil, nil)
		if got := servedCert(res); got != tc.want {
			t.Errorf("SNI %s: served certificate %q, want %q", tc.sni, got, tc.want)
		}
		if res.ProtoMajor != 2 {
			t.Errorf("SNI %s: %s, want HTTP/2 over TLS", tc.sni, res.Proto)
		}
		if tc.sni != "other.example" && (e.Header.Get("X-Forwarded-Proto") != "https" || e.Header.Get("X-Forwarded-Port") != "443") {
			t.Errorf("SNI %s: backend saw X-Forwarded-Proto %q port %q", tc.sni, e.Header.Get("X-Forwarded-Proto"), e.Header.Get("X-Forwarded-Port"))
		}
	}
	// No SNI at all (a client connecting by address): the default certificate.
	res, _ := l.do(l.client(clientOpts{serverName: l.ip.String()}), "GET", "https://"+l.ip.String()+"/", nil, map[string]string{"Host": "a.example"})
	if got := servedCert(res); got != "default.example" {
		t.Errorf("no SNI: served %q, want the default certificate", got)
	}

	c := l.client(clientOpts{})
	for _, tc := range []struct{ url, location string }{
		{"http://a.example/path?q=1", "https://a.example/path?q=1"}, // TLS host: ssl-redirect defaults on
		{"http://A.EXAMPLE:80/x", "https://A.EXAMPLE/x"},            // port dropped
		{"http://b.example/", ""},                                   // ssl-redirect: "false"
		{"http://plain.example/", ""},                               // no TLS section
		{"http://forced.example/x", "https://forced.example/x"},     // force-ssl-redirect without TLS
		{"http://a.example/.well-known/acme-challenge/token", ""},   // HTTP-01 challenges pass
	} {
		res, _ := l.do(c, "GET", tc.url, nil, nil)
		if tc.location == "" {
			if res.StatusCode != http.StatusOK {
				t.Errorf("%s: %d, want 200 without redirect", tc.url, res.StatusCode)
			}
			continue
		}
		if res.StatusCode != http.StatusPermanentRedirect || res.Header.Get("Location") != tc.location {
			t.Errorf("%s: %d Location %q, want 308 to %s", tc.url, res.StatusCode, res.Header.Get("Location"), tc.location)
		}
	}

	// A missing Secret leaves that host on the default certificate and the other
	// hosts on theirs.
	tab, problems := ingress.Build(ingress.Input{
		Ingresses:    []ingress.Ingress{withTLS("a", "a.example", "a-tls", nil), withTLS("b", "b.example", "gone", nil)},
		Endpoints:    endpoints(map[string][]*backend{"b": {b}}),
		Certificates: secrets,
	})
	if len(problems) != 1 || problems[0].Reason != ingress.ReasonSecretMissing {
		t.Fatalf("problems = %v, want one SecretMissing", problems)
	}
	l.srv.Update(tab)
	for sni, want := range map[string]string{"a.example": "a.example", "b.example": "default.example"} {
		res, _ := l.do(l.client(clientOpts{serverName: sni}), "GET", "https://"+sni+"/", nil, nil)
		if got := servedCert(res); got != want || res.StatusCode != http.StatusOK {
			t.Errorf("after b's Secret went missing, SNI %s: %d with %q, want 200 with %q", sni, res.StatusCode, got, want)
		}
	}
}

// TestGeneratedDefaultCertificate: without a configured default, a self-signed one.
func TestGeneratedDefaultCertificate(t *testing.T) {
	l := newLab(t, Options{})
	b := startBackend(t, "b", nil)
	l.update(ingress.Input{Ingresses: []ingress.Ingress{simpleIngress("i", "app.example", "b", nil)},
		Endpoints: endpoints(map[string][]*backend{"b": {b}})})
	res, e := l.do(l.client(clientOpts{}), "GET", "https://app.example/", nil, nil)
	if res.StatusCode != http.StatusOK || e.Backend != "b" || servedCert(res) != "ironlb-ingress.invalid" {
		t.Errorf("%d from %q with certificate %q, want 200 from b with the generated certificate", res.StatusCode, e.Backend, servedCert(res))
	}
}
