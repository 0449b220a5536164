package main

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// routes is the one configuration both proxies serve, as an Ingress for
// ironlb-ingress and as nginx.conf for nginx:
//
//	foo.bar.com  /foo -> s1, /bar -> bar (s2, or s1), /<extra> -> s1, else -> def
//	bar.foo.com  /    -> s2
//	other hosts       -> def
//	TLS: foo.bar.com, bar.foo.com with their own certificates; the default
//	certificate for other server names.
//
// Plain HTTP is not redirected to https (ssl-redirect: "false"), so the same
// routes serve both ports.
type routes struct {
	bar   string
	extra string
	eps   map[string][]netip.AddrPort // ready endpoints per Service
}

var services = []string{"s1", "s2", "def"}

// changeRoute is route change i: /bar flips between s2 and s1 and the extra
// path gets a new name, so every change alters the routing table.
func (r *routes) changeRoute(i int) {
	r.bar = "s2"
	if i%2 == 1 {
		r.bar = "s1"
	}
	r.extra = fmt.Sprintf("/v%d", i)
}

// ingress is the Ingress of r (Services in the Ingress's namespace, port
// "http").
func (r *routes) ingress(ns string) *networkingv1.Ingress {
	class := "ironlb"
	prefix := networkingv1.PathTypePrefix
	be := func(svc string) networkingv1.IngressBackend {
		return networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: svc, Port: networkingv1.ServiceBackendPort{Name: "http"}}}
	}
	p := func(path, svc string) networkingv1.HTTPIngressPath {
		return networkingv1.HTTPIngressPath{Path: path, PathType: &prefix, Backend: be(svc)}
	}
	rule := func(host string, paths ...networkingv1.HTTPIngressPath) networkingv1.IngressRule {
		return networkingv1.IngressRule{Host: host, IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{Paths: paths}}}
	}
	def := be("def")
	return &networkingv1.Ingress{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "bench",
			Annotations: map[string]string{"nginx.ingress.kubernetes.io/ssl-redirect": "false"}},
		Spec: networkingv1.IngressSpec{
			IngressClassName: &class,
			DefaultBackend:   &def,
			TLS: []networkingv1.IngressTLS{
				{Hosts: []string{"foo.bar.com"}, SecretName: "foo-tls"},
				{Hosts: []string{"bar.foo.com"}, SecretName: "bar-tls"},
			},
			Rules: []networkingv1.IngressRule{
				rule("foo.bar.com", p("/foo", "s1"), p("/bar", r.bar), p(r.extra, "s1")),
				rule("bar.foo.com", p("/", "s2")),
			},
		},
	}
}

// nginxConf is r as an nginx configuration with ingress-nginx's defaults where
// they matter for speed (upstream keep-alive 320 connections and 10000 requests
// each, client keep-alive 1000 requests, 3 tries on connection errors), the
// same forwarded headers ironlb sets, access log off, and worker_processes 2
// (the machine's cores; ironlb-ingress runs with GOMAXPROCS at its default,
// the same 2). dir holds the pid file, temp folders and certificates
// (<name>.crt/.key for foo, bar and default).
func (r *routes) nginxConf(dir string) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("worker_processes 2;")
	w("pid %s;", filepath.Join(dir, "nginx.pid"))
	w("events { worker_connections 8192; }")
	w("http {")
	w("  access_log off;")
	for _, t := range []string{"client_body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		w("  %s_temp_path %s;", t, filepath.Join(dir, "tmp-"+t))
	}
	w("  keepalive_timeout 75s;")
	w("  keepalive_requests 1000;")
	w("  proxy_http_version 1.1;")
	w(`  proxy_set_header Connection "";`)
	w("  proxy_set_header Host $host;")
	w("  proxy_set_header X-Real-IP $remote_addr;")
	w("  proxy_set_header X-Forwarded-For $remote_addr;")
	w("  proxy_set_header X-Forwarded-Host $host;")
	w("  proxy_set_header X-Forwarded-Port $server_port;")
	w("  proxy_set_header X-Forwarded-Proto $scheme;")
	w("  proxy_set_header X-Forwarded-Scheme $scheme;")
	w("  proxy_set_header X-Scheme $scheme;")
	w("  proxy_next_upstream error timeout;")
	w("  proxy_next_upstream_tries 3;")
	w("  proxy_connect_timeout 5s;")
	w("  proxy_read_timeout 60s;")
	w("  ssl_protocols TLSv1.2 TLSv1.3;")
	for _, svc := range services {
		w("  upstream %s {", svc)
		eps := slices.Clone(r.eps[svc])
		if len(eps) == 0 {
			w("    server 127.0.0.1:1 down;")
		}
		for _, e := range eps {
			w("    server %s;", e)
		}
		w("    keepalive 320;")
		w("    keepalive_requests 10000;")
		w("    keepalive_timeout 60s;")
		w("  }")
	}
	server := func(name, cert string, locations ...string) {
		w("  server {")
		if name == "_" {
			w("    listen 80 default_server;")
			w("    listen 443 ssl http2 default_server;")
		} else {
			w("    listen 80;")
			w("    listen 443 ssl http2;")
		}
		w("    server_name %s;", name)
		w("    ssl_certificate %s;", filepath.Join(dir, cert+".crt"))
		w("    ssl_certificate_key %s;", filepath.Join(dir, cert+".key"))
		for i := 0; i+1 < len(locations); i += 2 {
			// Prefix as Ingress means it: the path itself and below it, not /foobar.
			path, svc := locations[i], locations[i+1]
			if path == "/" {
				w("    location / { proxy_pass http://%s; }", svc)
				continue
			}
			w("    location = %s { proxy_pass http://%s; }", path, svc)
			w("    location %s/ { proxy_pass http://%s; }", path, svc)
		}
		w("  }")
	}
	server("_", "default", "/", "def")
	server("foo.bar.com", "foo", "/foo", "s1", "/bar", r.bar, r.extra, "s1", "/", "def")
	server("bar.foo.com", "bar", "/", "s2")
	w("}")
	return b.String()
}
