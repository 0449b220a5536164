package ingress

import (
	"crypto/tls"
	"net/netip"
	"strconv"
	"time"
)

// PathType says how a Path is compared with a request path (networking.k8s.io/v1
// pathType).
type PathType string

// The path types of networking.k8s.io/v1.
const (
	// PathExact matches the request path exactly, case-sensitively.
	PathExact PathType = "Exact"
	// PathPrefix matches element-wise on "/": /foo matches /foo, /foo/ and /foo/bar,
	// not /foobar. A trailing slash on either side is ignored.
	PathPrefix PathType = "Prefix"
	// PathImplementationSpecific is treated exactly as PathPrefix, except on a host in
	// regex mode (see the package doc), where every path is a regular expression.
	PathImplementationSpecific PathType = "ImplementationSpecific"
)

// ServicePort names a port of a Service by number or by name (exactly one is set, as
// in networking.k8s.io/v1 ServiceBackendPort).
type ServicePort struct {
	Name   string
	Number int32
}

// String is the port number, or its name when it has no number.
func (p ServicePort) String() string {
	if p.Name != "" {
		return p.Name
	}
	return strconv.Itoa(int(p.Number))
}

// Backend is where an Ingress path sends requests: a Service port in the Ingress's own
// namespace, or a resource backend (which ironlb refuses, with a Problem).
type Backend struct {
	Service string
	Port    ServicePort
	// Resource is "apiGroup/Kind/name" of a resource backend; Service is then empty.
	Resource string
}

// Path is one entry of an Ingress rule's http.paths.
type Path struct {
	Path    string
	Type    PathType
	Backend Backend
}

// Rule is one entry of spec.rules. Host is empty (every host), an exact DNS name, or a
// wildcard "*.example.com" that matches exactly one more label.
type Rule struct {
	Host  string
	Paths []Path
}

// TLS is one entry of spec.tls: the certificate in SecretName (a kubernetes.io/tls
// Secret in the Ingress's namespace) serves Hosts.
type TLS struct {
	Hosts      []string
	SecretName string
}

// Ingress is one Ingress object in the neutral form the routing core reads; a
// Kubernetes shell translates networking.k8s.io/v1 Ingresses into it.
type Ingress struct {
	Namespace, Name string
	// Created decides merge conflicts: the oldest Ingress wins (see the package doc).
	Created        time.Time
	Annotations    map[string]string
	DefaultBackend *Backend
	Rules          []Rule
	TLS            []TLS
}

// Key is "namespace/name".
func (ing *Ingress) Key() string { return ing.Namespace + "/" + ing.Name }

// ServiceKey identifies one port of one Service.
type ServiceKey struct {
	Namespace, Name string
	Port            ServicePort
}

// String is "namespace/name:port".
func (k ServiceKey) String() string { return k.Namespace + "/" + k.Name + ":" + k.Port.String() }

// SecretKey identifies a Secret.
type SecretKey struct {
	Namespace, Name string
}

// String is "namespace/name".
func (k SecretKey) String() string { return k.Namespace + "/" + k.Name }

// Input is everything a Table is built from. Build never modifies it.
type Input struct {
	Ingresses []Ingress
	// Endpoints are the ready endpoints (address and target port) of each Service port
	// the Ingresses reference. A missing or empty entry makes that backend answer 503.
	Endpoints map[ServiceKey][]netip.AddrPort
	// Certificates are the parsed kubernetes.io/tls Secrets (see ParseCertificate).
	Certificates map[SecretKey]*tls.Certificate
	// SecretErrors are Secrets that exist but could not be used; a referenced Secret in
	// neither map is reported missing. Hosts of a bad Secret get the default certificate.
	SecretErrors map[SecretKey]error
	// DefaultCertificate answers TLS handshakes whose SNI matches no host. Nil leaves
	// the choice to the caller of Table.Certificate.
	DefaultCertificate *tls.Certificate
}
