package framework

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/yaml"

	"github.com/ironlb/ironlb/test/cluster"
	"github.com/ironlb/ironlb/test/lab"
)

// The Service ironlb-ingress publishes (deploy/ingress/service.yaml) and the
// port its metrics listen on (deploy/ingress/deployment.yaml).
const (
	IngressNamespace   = "ironlb-system"
	IngressService     = "ironlb-ingress"
	IngressMetricsPort = 10254
)

// Ingress is a running ironlb-ingress: a process in a pod namespace on a lab
// node, standing in for one replica of deploy/ingress/deployment.yaml.
type Ingress struct {
	*lab.Process
	Pod lab.Pod
	// MetricsAddr serves /metrics, /healthz and /readyz (reach it from the pod's node).
	MetricsAddr netip.AddrPort
}

// InstallIngress applies deploy/ingress's IngressClass, RBAC and LoadBalancer
// Service (everything but the Deployment: the lab has no kubelet, StartIngress
// plays its Pod). Applying again is harmless.
func (e *Env) InstallIngress(ctx context.Context) error {
	return e.Cluster.Apply(ctx, false,
		e.DeployFile("ingress", "ingressclass.yaml"),
		e.DeployFile("ingress", "rbac.yaml"),
		e.DeployFile("ingress", "service.yaml"))
}

// ContainerArgs reads the args of container from the Pod template of a
// workload manifest (Deployment, DaemonSet) under deploy/, e.g.
// ("ingress", "ingress", "deployment.yaml"), so the lab runs a binary the way
// the shipped manifest does.
func (e *Env) ContainerArgs(container string, file ...string) ([]string, error) {
	b, err := os.ReadFile(e.DeployFile(file...))
	if err != nil {
		return nil, err
	}
	var w struct {
		Spec struct {
			Template corev1.PodTemplateSpec `json:"template"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(b, &w); err != nil {
		return nil, fmt.Errorf("deploy/%s: %w", filepath.Join(file...), err)
	}
	for _, c := range w.Spec.Template.Spec.Containers {
		if c.Name == container {
			return c.Args, nil
		}
	}
	return nil, fmt.Errorf("deploy/%s: no container named %s", filepath.Join(file...), container)
}

// StartIngress runs ironlb-ingress in a new pod namespace named name on lab
// node (the pod's address is 198.18.<node>.<k>, k the first free index from
// 10), as ServiceAccount ironlb-system/ironlb-ingress with the RBAC of
// deploy/ingress (InstallIngress) and the Deployment's args (:80, :443,
// --publish-service=ironlb-system/ironlb-ingress), its metrics on the pod's
// address. extra args are appended (later flags win); env entries
// ("KEY=value", e.g. GOMAXPROCS) are set for the process. It returns once
// /readyz answers ok (a routing table was built from synced caches), at most
// 30s. The caller publishes the pod as an endpoint of the Service in front of
// it (PublishPortEndpoints).
func (e *Env) StartIngress(ctx context.Context, node int, name string, env []string, extra ...string) (*Ingress, error) {
	bin, err := ironlbBinary(ctx, e.RepoRoot, "ironlb-ingress", e.log)
	if err != nil {
		return nil, err
	}
	if err := e.podsReachAPI(ctx); err != nil {
		return nil, err
	}
	kc, err := e.Cluster.ServiceAccountKubeconfig(ctx, IngressNamespace, "ironlb-ingress", 2*time.Hour)
	if err != nil {
		return nil, err
	}
	if kc, err = e.lanKubeconfig(kc); err != nil {
		return nil, err
	}
	args, err := e.ContainerArgs("ingress", "ingress", "deployment.yaml")
	if err != nil {
		return nil, err
	}
	pod, err := e.AddPod(ctx, node, name)
	if err != nil {
		return nil, err
	}
	metrics := netip.AddrPortFrom(pod.IP, IngressMetricsPort)
	args = append(args, "--kubeconfig="+kc, "--metrics-addr="+metrics.String())
	args = append(args, extra...)
	argv := append([]string{bin}, args...)
	if len(env) > 0 {
		argv = append(append([]string{"env"}, env...), argv...)
	}
	p, err := e.Lab.Start(pod.Host, filepath.Join(e.Lab.Dir(), name+".log"), argv...)
	if err != nil {
		return nil, err
	}
	e.track(p.Pid())
	ing := &Ingress{Process: p, Pod: pod, MetricsAddr: metrics}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var last error
	for {
		var body string
		body, last = e.Lab.HTTPGet(wctx, e.Lab.NodeName(node), "http://"+metrics.String()+"/readyz", time.Second)
		if last == nil && strings.TrimSpace(body) == "ok" {
			return ing, nil
		}
		select {
		case <-p.Done():
			return nil, fmt.Errorf("ironlb-ingress %s exited: %v: %s", name, p.Err(), p.Tail(3000))
		case <-wctx.Done():
			_ = p.Stop()
			return nil, fmt.Errorf("ironlb-ingress %s not ready within 30s: %v %s; log: %s", name, last, body, p.Tail(3000))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// AddPod adds a pod namespace named name on lab node at the first free pod
// index from 10 (for processes other than the pod server, which StartBackendsOn
// runs).
func (e *Env) AddPod(ctx context.Context, node int, name string) (lab.Pod, error) {
	used := map[string]bool{}
	for _, p := range e.Lab.Pods() {
		used[p.Host] = true
	}
	k := 10
	for used[fmt.Sprintf("pod-%d-%d", node, k)] {
		k++
	}
	return e.Lab.AddPod(ctx, node, k, name)
}

// podsReachAPI gives cp a route to every node's pod network via that node, so
// processes in pod namespaces reach the API server at cp's LAN address (in a
// cluster the pod network is routable from the control plane). Idempotent.
func (e *Env) podsReachAPI(ctx context.Context) error {
	for i := 1; i <= e.Lab.Nodes(); i++ {
		dst, via := e.Lab.PodCIDR(i), e.Lab.NodeIP(i)
		if err := lab.CheckPrefix(dst); err != nil {
			return err
		}
		if _, err := e.Lab.Exec(ctx, lab.HostCP, "ip", "route", "replace", dst.String(), "via", via.String()); err != nil {
			return err
		}
	}
	return nil
}

// PublishPortEndpoints makes pods the ready endpoints of Service
// namespace/service with the named ports (e.g. http: 80, https: 443), in one
// IPv4 EndpointSlice "<service>-lab" (cluster.SetEndpoints writes one port).
func (e *Env) PublishPortEndpoints(ctx context.Context, namespace, service string, pods []lab.Pod, ports map[string]int32) error {
	t := true
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name: service + "-lab", Namespace: namespace,
			Labels: map[string]string{discoveryv1.LabelServiceName: service, cluster.LabelManagedBy: cluster.ManagedBy},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
	}
	for _, p := range pods {
		node := e.Lab.NodeName(p.Node)
		slice.Endpoints = append(slice.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{p.IP.String()},
			Conditions: discoveryv1.EndpointConditions{Ready: &t, Serving: &t},
			NodeName:   &node,
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: namespace, Name: p.Name},
		})
	}
	for name, port := range ports {
		tcp := corev1.ProtocolTCP
		slice.Ports = append(slice.Ports, discoveryv1.EndpointPort{Name: &name, Port: &port, Protocol: &tcp})
	}
	slices := e.Cluster.Client.DiscoveryV1().EndpointSlices(namespace)
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		old, err := slices.Get(ctx, slice.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			_, err = slices.Create(ctx, slice, metav1.CreateOptions{})
			return err
		}
		if err != nil {
			return err
		}
		slice.ResourceVersion = old.ResourceVersion
		_, err = slices.Update(ctx, slice, metav1.UpdateOptions{})
		return err
	})
}

// CurlOptions shape one Curl request.
type CurlOptions struct {
	// CACert is a PEM file the server certificate must verify against (for the
	// URL's host name); empty skips verification (-k).
	CACert string
	// HTTP2 asks for HTTP/2 over TLS (ALPN); without it curl speaks HTTP/1.1.
	HTTP2   bool
	Headers []string // "Name: value"
	Timeout time.Duration
}

// CurlResult is what curl saw.
type CurlResult struct {
	Code        int
	HTTPVersion string // "1.1", "2"
	Location    string // the redirect target of a 3xx
	Body        string
}

// Curl sends one request for rawURL (http or https; its host is a name, e.g.
// http://foo.bar.com/foo) from lab host from to vip, with curl --resolve
// pinning the name to vip: the Host header and the TLS server name are the
// URL's. Redirects are not followed. Any HTTP status is a result, not an error.
func (e *Env) Curl(ctx context.Context, from string, vip netip.Addr, rawURL string, o CurlOptions) (CurlResult, error) {
	if err := lab.CheckAddr(vip); err != nil {
		return CurlResult{}, err
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return CurlResult{}, fmt.Errorf("curl: bad URL %q: %w", rawURL, err)
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	if port == "" || u.Hostname() == "" {
		return CurlResult{}, fmt.Errorf("curl: URL %q needs http(s) and a host", rawURL)
	}
	addr := vip.String()
	if vip.Is6() {
		addr = "[" + addr + "]"
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	o.Timeout = min(o.Timeout, time.Minute)
	const marker = "\n@@curl "
	args := []string{"curl", "-sS", "--noproxy", "*", "--max-time", strconv.FormatFloat(o.Timeout.Seconds(), 'f', 3, 64),
		"--resolve", u.Hostname() + ":" + port + ":" + addr,
		"--write-out", marker + "%{http_code} %{http_version} %{redirect_url}"}
	if o.CACert != "" {
		args = append(args, "--cacert", o.CACert)
	} else {
		args = append(args, "-k")
	}
	if o.HTTP2 {
		args = append(args, "--http2")
	} else {
		args = append(args, "--http1.1")
	}
	for _, h := range o.Headers {
		args = append(args, "-H", h)
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout+5*time.Second)
	defer cancel()
	out, err := e.Lab.Exec(ctx, from, append(args, rawURL)...)
	if err != nil {
		return CurlResult{}, err
	}
	i := strings.LastIndex(out, marker)
	if i < 0 {
		return CurlResult{}, fmt.Errorf("curl %s: no status in output %q", rawURL, out)
	}
	f := strings.Fields(out[i+len(marker):])
	r := CurlResult{Body: out[:i]}
	if len(f) < 2 {
		return r, fmt.Errorf("curl %s: bad status line %q", rawURL, out[i:])
	}
	if r.Code, err = strconv.Atoi(f[0]); err != nil {
		return r, fmt.Errorf("curl %s: bad status %q", rawURL, f[0])
	}
	r.HTTPVersion = f[1]
	if len(f) > 2 {
		r.Location = f[2]
	}
	return r, nil
}

// PeerCertificate makes a TLS handshake from lab host from to vip:port with
// server name (SNI) serverName (none when empty), with openssl s_client, and
// returns the certificate the server presented.
func (e *Env) PeerCertificate(ctx context.Context, from string, vip netip.Addr, port int, serverName string) (*x509.Certificate, error) {
	if err := lab.CheckAddr(vip); err != nil {
		return nil, err
	}
	args := []string{"openssl", "s_client", "-connect", net.JoinHostPort(vip.String(), strconv.Itoa(port))}
	if serverName != "" {
		args = append(args, "-servername", serverName)
	} else {
		args = append(args, "-noservername")
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	// s_client reads stdin (the lab's is /dev/null), so it closes after the handshake.
	out, err := e.Lab.Exec(ctx, from, args...)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode([]byte(out[max(0, strings.Index(out, "-----BEGIN CERTIFICATE-----")):]))
	if block == nil {
		return nil, fmt.Errorf("openssl s_client %s: no certificate in %q", serverName, out)
	}
	return x509.ParseCertificate(block.Bytes)
}

// TLSAuthority is a throwaway certificate authority for TLS tests: it issues
// server certificates for host names, and clients trust CertPEM.
type TLSAuthority struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	CertPEM []byte
}

// NewTLSAuthority makes a self-signed CA with common name cn, valid for a day.
func NewTLSAuthority(cn string) (*TLSAuthority, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &TLSAuthority{cert: cert, key: key, CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

// Issue makes a server certificate (ECDSA P-256) with common name and DNS names
// hosts, and returns tls.crt and tls.key as a kubernetes.io/tls Secret holds them.
func (a *TLSAuthority) Issue(hosts ...string) (certPEM, keyPEM []byte, err error) {
	if len(hosts) == 0 {
		return nil, nil, errors.New("Issue: no host")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: hosts[0]}, DNSNames: hosts,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.cert, &key.PublicKey, a.key)
	if err != nil {
		return nil, nil, err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	var c, k bytes.Buffer
	_ = pem.Encode(&c, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	_ = pem.Encode(&k, &pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	return c.Bytes(), k.Bytes(), nil
}

// TLSSecret is a kubernetes.io/tls Secret holding certPEM and keyPEM.
func TLSSecret(namespace, name string, certPEM, keyPEM []byte) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{corev1.TLSCertKey: certPEM, corev1.TLSPrivateKeyKey: keyPEM},
	}
}
