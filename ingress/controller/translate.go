package controller

import (
	"crypto/tls"
	"fmt"
	"net/netip"
	"sort"

	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/ironlb/ironlb/ingress"
)

// Annotations and labels read from Kubernetes objects.
const (
	// LegacyClassAnnotation is the pre-IngressClass way to pick a controller.
	LegacyClassAnnotation = "kubernetes.io/ingress.class"
	// DefaultClassAnnotation marks the IngressClass of Ingresses without a class.
	DefaultClassAnnotation = "ingressclass.kubernetes.io/is-default-class"
)

// class is what decides whether an Ingress is ours.
type class struct {
	name      string // --ingress-class
	exists    bool   // an IngressClass of that name names our controller
	isDefault bool   // ... and is the cluster's default class
}

// classOf reads the IngressClass objects.
func classOf(name string, classes []*networkingv1.IngressClass) class {
	c := class{name: name}
	for _, ic := range classes {
		if ic.Name == name && ic.Spec.Controller == ControllerName {
			c.exists = true
			c.isDefault = ic.Annotations[DefaultClassAnnotation] == "true"
		}
	}
	return c
}

// handles reports whether an Ingress belongs to c: the legacy annotation, when
// present, decides alone (it needs no IngressClass object, as in ingress-nginx); else
// spec.ingressClassName must name our IngressClass; an Ingress with neither is ours
// when our IngressClass is the default class.
func (c class) handles(ing *networkingv1.Ingress) bool {
	if v, ok := ing.Annotations[LegacyClassAnnotation]; ok {
		return v == c.name
	}
	if ing.Spec.IngressClassName != nil {
		return *ing.Spec.IngressClassName == c.name && c.exists
	}
	return c.exists && c.isDefault
}

// translate turns a networking.k8s.io/v1 Ingress into the routing core's form.
func translate(ing *networkingv1.Ingress) ingress.Ingress {
	out := ingress.Ingress{Namespace: ing.Namespace, Name: ing.Name, Created: ing.CreationTimestamp.Time,
		Annotations: ing.Annotations}
	if ing.Spec.DefaultBackend != nil {
		b := translateBackend(ing.Spec.DefaultBackend)
		out.DefaultBackend = &b
	}
	for _, r := range ing.Spec.Rules {
		rule := ingress.Rule{Host: r.Host}
		if r.HTTP != nil {
			for _, p := range r.HTTP.Paths {
				pt := ingress.PathImplementationSpecific
				if p.PathType != nil {
					pt = ingress.PathType(*p.PathType)
				}
				rule.Paths = append(rule.Paths, ingress.Path{Path: p.Path, Type: pt, Backend: translateBackend(&p.Backend)})
			}
		}
		out.Rules = append(out.Rules, rule)
	}
	for _, t := range ing.Spec.TLS {
		out.TLS = append(out.TLS, ingress.TLS{Hosts: t.Hosts, SecretName: t.SecretName})
	}
	return out
}

func translateBackend(b *networkingv1.IngressBackend) ingress.Backend {
	switch {
	case b.Resource != nil:
		group := ""
		if b.Resource.APIGroup != nil {
			group = *b.Resource.APIGroup
		}
		return ingress.Backend{Resource: group + "/" + b.Resource.Kind + "/" + b.Resource.Name}
	case b.Service != nil:
		return ingress.Backend{Service: b.Service.Name,
			Port: ingress.ServicePort{Name: b.Service.Port.Name, Number: b.Service.Port.Number}}
	}
	return ingress.Backend{}
}

// backends lists the Service backends of an Ingress (default backend and paths).
func backends(ing *ingress.Ingress) []ingress.Backend {
	var out []ingress.Backend
	if ing.DefaultBackend != nil && ing.DefaultBackend.Service != "" {
		out = append(out, *ing.DefaultBackend)
	}
	for _, r := range ing.Rules {
		for _, p := range r.Paths {
			if p.Backend.Service != "" {
				out = append(out, p.Backend)
			}
		}
	}
	return out
}

// resolveEndpoints returns the ready endpoints of a Service port: the Service port
// (by number or name) gives the port name, the EndpointSlices of the Service give,
// per slice, the target port of that name and the ready addresses. Duplicates (an
// endpoint in two slices while they are being rewritten) are dropped, the result is
// sorted.
func resolveEndpoints(svc *v1.Service, port ingress.ServicePort, slices []*discoveryv1.EndpointSlice) ([]netip.AddrPort, error) {
	if svc.Spec.Type == v1.ServiceTypeExternalName {
		return nil, fmt.Errorf("Service %s/%s is of type ExternalName, which ironlb-ingress does not proxy to", svc.Namespace, svc.Name)
	}
	portName, found := "", false
	for _, p := range svc.Spec.Ports {
		if (port.Name != "" && p.Name == port.Name) || (port.Name == "" && p.Port == port.Number) {
			portName, found = p.Name, true
			break
		}
	}
	if !found {
		return nil, fmt.Errorf("Service %s/%s has no port %s", svc.Namespace, svc.Name, port)
	}
	seen := map[netip.AddrPort]bool{}
	var out []netip.AddrPort
	for _, s := range slices {
		if s.AddressType != discoveryv1.AddressTypeIPv4 && s.AddressType != discoveryv1.AddressTypeIPv6 {
			continue
		}
		var target int32
		for _, p := range s.Ports {
			name := ""
			if p.Name != nil {
				name = *p.Name
			}
			if name == portName && p.Port != nil {
				target = *p.Port
			}
		}
		if target <= 0 || target > 65535 {
			continue
		}
		for _, ep := range s.Endpoints {
			if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
				continue
			}
			for _, a := range ep.Addresses {
				ip, err := netip.ParseAddr(a)
				if err != nil {
					continue
				}
				ap := netip.AddrPortFrom(ip.Unmap(), uint16(target))
				if !seen[ap] {
					seen[ap] = true
					out = append(out, ap)
				}
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Compare(out[j]) < 0 })
	return out, nil
}

// certCache keeps parsed kubernetes.io/tls Secrets by UID and resourceVersion, so a
// sync parses only Secrets that changed.
type certCache struct {
	entries map[types.UID]certCacheEntry
	used    map[types.UID]bool
}

type certCacheEntry struct {
	rv   string
	cert *tls.Certificate
	err  error
}

func newCertCache() *certCache {
	return &certCache{entries: map[types.UID]certCacheEntry{}, used: map[types.UID]bool{}}
}

func (c *certCache) parse(s *v1.Secret) (*tls.Certificate, error) {
	c.used[s.UID] = true
	if e, ok := c.entries[s.UID]; ok && e.rv == s.ResourceVersion {
		return e.cert, e.err
	}
	var cert *tls.Certificate
	var err error
	if s.Type != v1.SecretTypeTLS {
		err = fmt.Errorf("type %s, want %s", s.Type, v1.SecretTypeTLS)
	} else {
		cert, err = ingress.ParseCertificate(s.Data[v1.TLSCertKey], s.Data[v1.TLSPrivateKeyKey])
	}
	c.entries[s.UID] = certCacheEntry{rv: s.ResourceVersion, cert: cert, err: err}
	return cert, err
}

// sweep forgets the Secrets not parsed since the last sweep.
func (c *certCache) sweep() {
	for uid := range c.entries {
		if !c.used[uid] {
			delete(c.entries, uid)
		}
	}
	clear(c.used)
}
