package ingress

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// AnnotationPrefix is the prefix of the ingress-nginx annotations ironlb reads.
const AnnotationPrefix = "nginx.ingress.kubernetes.io/"

// Protocol is how the proxy talks to a backend (annotation backend-protocol).
type Protocol uint8

// Backend protocols, as ingress-nginx names them.
const (
	// ProtocolHTTP is HTTP/1.1 in clear text (the default).
	ProtocolHTTP Protocol = iota
	// ProtocolHTTPS is HTTP/1.1 over TLS; the backend's certificate is not verified
	// (ingress-nginx's default, proxy-ssl-verify off).
	ProtocolHTTPS
	// ProtocolGRPC is HTTP/2 in clear text (h2c with prior knowledge).
	ProtocolGRPC
	// ProtocolGRPCS is HTTP/2 over TLS, certificate not verified.
	ProtocolGRPCS
)

// String is the annotation value of p.
func (p Protocol) String() string {
	switch p {
	case ProtocolHTTPS:
		return "HTTPS"
	case ProtocolGRPC:
		return "GRPC"
	case ProtocolGRPCS:
		return "GRPCS"
	}
	return "HTTP"
}

// Options are the per-Ingress settings taken from ingress-nginx annotations. The zero
// value is not the default: start from DefaultOptions.
type Options struct {
	// SSLRedirect (ssl-redirect, default true) redirects plain-HTTP requests with 308 to
	// https when the request's host has a TLS certificate (spec.tls).
	SSLRedirect bool
	// ForceSSLRedirect (force-ssl-redirect) redirects even when the host has no TLS
	// section (TLS terminated in front of ironlb, seen through trusted X-Forwarded-Proto).
	ForceSSLRedirect bool
	// UseRegex (use-regex) turns every path of every Ingress on the same host into a
	// case-insensitive regular expression anchored at the start (see the package doc).
	UseRegex bool
	// RewriteTarget (rewrite-target) replaces the request path sent to the backend:
	// the path regular expression is applied to the request path and $1..$9 in the
	// target are its capture groups. It implies UseRegex for the host, as in ingress-nginx.
	RewriteTarget string
	// BackendProtocol (backend-protocol): HTTP, HTTPS, GRPC or GRPCS.
	BackendProtocol Protocol
	// MaxBodyBytes (proxy-body-size, nginx size syntax such as 8m): a larger request
	// body gets 413. 0 means unlimited; -1 (unset) leaves the proxy's default.
	MaxBodyBytes int64
	// ReadTimeout (proxy-read-timeout, seconds): the longest wait for the next bytes
	// of the backend's response. 0 (unset) leaves the proxy's default.
	ReadTimeout time.Duration
	// AllowSourceRange (whitelist-source-range or allowlist-source-range, a comma list
	// of CIDRs or addresses): when non-empty, other clients get 403.
	AllowSourceRange []netip.Prefix
	// Denied is set when an access-control annotation did not parse: every request of
	// the Ingress then gets 503, as in ingress-nginx (failing closed, not open).
	Denied bool
	// Canary is the canary policy of a canary Ingress (annotation canary: "true").
	Canary CanaryPolicy
}

// CanaryPolicy says which requests a canary Ingress takes from the main Ingress of the
// same host and path. Precedence, as in ingress-nginx: header, then cookie, then weight.
type CanaryPolicy struct {
	Enabled bool
	// Header (canary-by-header): "always" sends to the canary, "never" to the main
	// backend; other values fall through. With HeaderValue (canary-by-header-value)
	// only that exact value selects the canary, and "always"/"never" are not special.
	Header, HeaderValue string
	// Cookie (canary-by-cookie): value "always" or "never", as for Header.
	Cookie string
	// Weight of WeightTotal requests go to the canary (canary-weight,
	// canary-weight-total, default total 100).
	Weight, WeightTotal int
}

// DefaultOptions are the settings of an Ingress without annotations.
func DefaultOptions() Options {
	return Options{SSLRedirect: true, MaxBodyBytes: -1, Canary: CanaryPolicy{WeightTotal: 100}}
}

// ErrIgnoredAnnotation marks an annotation under AnnotationPrefix that ironlb does not
// implement.
var ErrIgnoredAnnotation = errors.New("not implemented by ironlb-ingress; ignored")

// AnnotationError is an annotation that was ignored or did not parse.
type AnnotationError struct {
	Key, Value string
	Err        error
}

// Error names the annotation and, unless it was ignored, its value.
func (e *AnnotationError) Error() string {
	if errors.Is(e.Err, ErrIgnoredAnnotation) {
		return fmt.Sprintf("annotation %s: %v", e.Key, e.Err)
	}
	return fmt.Sprintf("annotation %s=%q: %v", e.Key, e.Value, e.Err)
}

// Unwrap returns Err (ErrIgnoredAnnotation for an ignored annotation).
func (e *AnnotationError) Unwrap() error { return e.Err }

// annotationParsers apply one annotation (key without prefix) to Options.
var annotationParsers = map[string]func(o *Options, v string) error{
	"ssl-redirect":       func(o *Options, v string) error { return parseBool(v, &o.SSLRedirect) },
	"force-ssl-redirect": func(o *Options, v string) error { return parseBool(v, &o.ForceSSLRedirect) },
	"use-regex":          func(o *Options, v string) error { return parseBool(v, &o.UseRegex) },
	"rewrite-target":     parseRewriteTarget,
	"backend-protocol":   parseProtocol,
	"proxy-body-size": func(o *Options, v string) error {
		n, err := ParseSize(v)
		if err == nil {
			o.MaxBodyBytes = n
		}
		return err
	},
	"proxy-read-timeout":     parseReadTimeout,
	"whitelist-source-range": parseSourceRange,
	"allowlist-source-range": parseSourceRange,
	"canary":                 func(o *Options, v string) error { return parseBool(v, &o.Canary.Enabled) },
	"canary-weight": func(o *Options, v string) error {
		return parseInt(v, 0, math.MaxInt32, &o.Canary.Weight)
	},
	"canary-weight-total": func(o *Options, v string) error {
		return parseInt(v, 1, math.MaxInt32, &o.Canary.WeightTotal)
	},
	"canary-by-header":       func(o *Options, v string) error { o.Canary.Header = strings.TrimSpace(v); return nil },
	"canary-by-header-value": func(o *Options, v string) error { o.Canary.HeaderValue = v; return nil },
	"canary-by-cookie":       func(o *Options, v string) error { o.Canary.Cookie = strings.TrimSpace(v); return nil },
}

// ParseAnnotations reads the ingress-nginx annotations of one Ingress. Annotations
// without AnnotationPrefix are not looked at. Every annotation under the prefix that
// ironlb does not implement, and every value that does not parse, is returned as an
// AnnotationError (in key order) and leaves its setting at the default. It never
// panics, whatever the input.
func ParseAnnotations(annotations map[string]string) (Options, []*AnnotationError) {
	o := DefaultOptions()
	var errs []*AnnotationError
	keys := make([]string, 0, len(annotations))
	for k := range annotations {
		if strings.HasPrefix(k, AnnotationPrefix) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	// allowlist-source-range is the newer name and wins over whitelist-source-range.
	if i := slices.Index(keys, AnnotationPrefix+"allowlist-source-range"); i >= 0 {
		if j := slices.Index(keys, AnnotationPrefix+"whitelist-source-range"); j >= 0 {
			keys = slices.Delete(keys, j, j+1)
		}
	}
	for _, k := range keys {
		v := annotations[k]
		parse, ok := annotationParsers[strings.TrimPrefix(k, AnnotationPrefix)]
		if !ok {
			errs = append(errs, &AnnotationError{Key: k, Value: v, Err: ErrIgnoredAnnotation})
			continue
		}
		if err := parse(&o, v); err != nil {
			errs = append(errs, &AnnotationError{Key: k, Value: v, Err: err})
		}
	}
	if o.Canary.Weight > o.Canary.WeightTotal {
		errs = append(errs, &AnnotationError{Key: AnnotationPrefix + "canary-weight",
			Value: strconv.Itoa(o.Canary.Weight),
			Err:   fmt.Errorf("larger than canary-weight-total %d; using the total", o.Canary.WeightTotal)})
		o.Canary.Weight = o.Canary.WeightTotal
	}
	return o, errs
}

func parseBool(v string, dst *bool) error {
	b, err := strconv.ParseBool(strings.TrimSpace(v))
	if err != nil {
		return errors.New("not a boolean")
	}
	*dst = b
	return nil
}

func parseInt(v string, lo, hi int, dst *int) error {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < lo || n > hi {
		return fmt.Errorf("not an integer in [%d, %d]", lo, hi)
	}
	*dst = n
	return nil
}

func parseRewriteTarget(o *Options, v string) error {
	if !strings.HasPrefix(v, "/") {
		return errors.New("must start with /")
	}
	o.RewriteTarget = v
	return nil
}

func parseProtocol(o *Options, v string) error {
	switch strings.ToUpper(strings.TrimSpace(v)) {
	case "HTTP":
		o.BackendProtocol = ProtocolHTTP
	case "HTTPS":
		o.BackendProtocol = ProtocolHTTPS
	case "GRPC":
		o.BackendProtocol = ProtocolGRPC
	case "GRPCS":
		o.BackendProtocol = ProtocolGRPCS
	default:
		return errors.New("ironlb-ingress supports HTTP, HTTPS, GRPC and GRPCS; using HTTP")
	}
	return nil
}

func parseReadTimeout(o *Options, v string) error {
	var s int
	if err := parseInt(v, 1, math.MaxInt32, &s); err != nil {
		return fmt.Errorf("seconds: %w", err)
	}
	o.ReadTimeout = time.Duration(s) * time.Second
	return nil
}

func parseSourceRange(o *Options, v string) error {
	var ps []netip.Prefix
	for f := range strings.SplitSeq(v, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			a, aerr := netip.ParseAddr(f)
			if aerr != nil {
				o.Denied = true
				o.AllowSourceRange = nil
				return fmt.Errorf("%q is neither a CIDR nor an address; every request is refused (503)", f)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		ps = append(ps, p.Masked())
	}
	o.AllowSourceRange = ps
	return nil
}

// ParseSize reads an nginx size: a decimal number of bytes with an optional unit k, m
// or g (powers of 1024, either case). "0" means unlimited.
func ParseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errors.New("empty size")
	}
	mult := int64(1)
	switch s[len(s)-1] {
	case 'k', 'K':
		mult = 1 << 10
	case 'm', 'M':
		mult = 1 << 20
	case 'g', 'G':
		mult = 1 << 30
	}
	if mult != 1 {
		s = s[:len(s)-1]
	}
	if s == "" || strings.TrimLeft(s, "0123456789") != "" {
		return 0, errors.New("not an nginx size (digits and an optional k, m or g)")
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n > math.MaxInt64/mult {
		return 0, errors.New("size out of range")
	}
	return n * mult, nil
}
