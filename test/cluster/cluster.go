// Package cluster runs a real Kubernetes control plane for tests: etcd and
// kube-apiserver built from the Go module proxy (see EnsureBinaries), with real
// TLS, client-certificate and service-account authentication and RBAC, optionally
// inside a network namespace. There is no kubelet, scheduler or
// kube-controller-manager: the harness creates Nodes and EndpointSlices itself.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Config says how to run a control plane.
type Config struct {
	// Dir is the working directory (certs, etcd data, kubeconfigs, logs). It is
	// created if missing; the caller removes it.
	Dir string
	// Wrap is a command prefix to run the processes in a network namespace, e.g.
	// []string{"ip", "netns", "exec", "ilb1234-cp"}; nil runs them here.
	Wrap []string
	// ListenAddress is where the API server binds (0.0.0.0 / :: for all).
	// Default: the first ServerAddress.
	ListenAddress netip.Addr
	// ServerAddresses are the addresses clients use. All go into the serving
	// certificate; kubeconfigs point at the first. Default: ListenAddress if
	// specific, else 127.0.0.1.
	ServerAddresses []netip.Addr
	// AdvertiseAddress is the API server's --advertise-address (the address in the
	// default/kubernetes Endpoints). Default: ListenAddress if specific, else the
	// first ServerAddress.
	AdvertiseAddress netip.Addr
	// ServiceCIDR is --service-cluster-ip-range. Default 198.19.0.0/16.
	ServiceCIDR netip.Prefix
	// ServiceCIDRv6, when valid, makes the cluster dual-stack: a second
	// --service-cluster-ip-range of the other family (e.g. 2001:db8:ffff::/112).
	ServiceCIDRv6 netip.Prefix
	// Port is the API server's secure port. Default 6443.
	Port int
	// Binaries are the executables; empty fields are filled by EnsureBinaries.
	Binaries Binaries
	// Log receives the processes' output, each line prefixed with the process
	// name; it is also kept in Dir/etcd.log and Dir/kube-apiserver.log.
	Log io.Writer
	// Audit makes the API server log every request's metadata (user, user
	// agent, verb, resource; no bodies) to Cluster.AuditLog, batched, for
	// benchmarks that count requests by client. It costs the API server a
	// JSON line per request.
	Audit bool
	// Profiling serves the API server's /debug/pprof (to system:masters),
	// for benchmarks that profile it; off otherwise.
	Profiling bool
}

// Cluster is a running control plane.
type Cluster struct {
	Dir    string
	Server string // https://host:port of the first ServerAddress
	CAFile string // PEM of the cluster CA (serving and client certs)
	CAData []byte
	// EtcdURL is etcd's client URL, reachable in the cluster's network namespace.
	EtcdURL string
	// AuditLog is the API server's audit log (JSON lines) when Config.Audit.
	AuditLog string

	AdminKubeconfig string // client cert in system:masters
	AdminConfig     *rest.Config
	Client          kubernetes.Interface
	Dynamic         dynamic.Interface
	APIExtensions   apiextensionsclient.Interface

	cfg      Config
	ca       *certAuthority
	mapper   *restmapper.DeferredDiscoveryRESTMapper
	mu       sync.Mutex
	procs    []*process
	stopOnce sync.Once
}

const serviceAccountIssuer = "https://kubernetes.default.svc.cluster.local"

func (cfg *Config) setDefaults() error {
	if cfg.Dir == "" {
		return errors.New("cluster: Config.Dir is required")
	}
	specific := cfg.ListenAddress.IsValid() && !cfg.ListenAddress.IsUnspecified()
	if len(cfg.ServerAddresses) == 0 {
		if specific {
			cfg.ServerAddresses = []netip.Addr{cfg.ListenAddress}
		} else {
			cfg.ServerAddresses = []netip.Addr{netip.MustParseAddr("127.0.0.1")}
		}
	}
	for _, a := range cfg.ServerAddresses {
		if !a.IsValid() || a.IsUnspecified() {
			return fmt.Errorf("cluster: invalid server address %v", a)
		}
	}
	if !cfg.ListenAddress.IsValid() {
		cfg.ListenAddress = cfg.ServerAddresses[0]
		specific = true
	}
	if !cfg.AdvertiseAddress.IsValid() {
		if specific {
			cfg.AdvertiseAddress = cfg.ListenAddress
		} else {
			cfg.AdvertiseAddress = cfg.ServerAddresses[0]
		}
	}
	if !cfg.ServiceCIDR.IsValid() {
		cfg.ServiceCIDR = netip.MustParsePrefix("198.19.0.0/16")
	}
	cfg.ServiceCIDR = cfg.ServiceCIDR.Masked()
	cfg.ServiceCIDRv6 = cfg.ServiceCIDRv6.Masked()
	if cfg.Port == 0 {
		cfg.Port = 6443
	}
	return nil
}

func serviceRanges(cfg Config) string {
	if cfg.ServiceCIDRv6.IsValid() {
		return cfg.ServiceCIDR.String() + "," + cfg.ServiceCIDRv6.String()
	}
	return cfg.ServiceCIDR.String()
}

// Start runs etcd and kube-apiserver and returns once /readyz answers ok and the
// default namespace exists. On error nothing is left running.
func Start(ctx context.Context, cfg Config) (_ *Cluster, err error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if cfg.Binaries.APIServer == "" || cfg.Binaries.Etcd == "" || cfg.Binaries.PodServer == "" {
		b, err := EnsureBinaries(ctx, cfg.Log)
		if err != nil {
			return nil, err
		}
		cfg.Binaries = b
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	c := &Cluster{Dir: dir, cfg: cfg}
	defer func() {
		if err != nil {
			c.Stop()
		}
	}()

	// PKI.
	if c.ca, err = newCA("ironlb-lab-ca"); err != nil {
		return nil, err
	}
	firstServiceIP := cfg.ServiceCIDR.Addr().Next()
	sans := append([]netip.Addr{}, cfg.ServerAddresses...)
	sans = append(sans, cfg.AdvertiseAddress, cfg.ListenAddress, firstServiceIP,
		netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1"))
	servingCert, servingKey, err := c.ca.issue("kube-apiserver", nil, true, sans, []string{
		"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
		"kubernetes.default.svc.cluster", "kubernetes.default.svc.cluster.local",
	})
	if err != nil {
		return nil, err
	}
	saKey, saPub, err := newServiceAccountKey()
	if err != nil {
		return nil, err
	}
	c.CAFile = filepath.Join(dir, "ca.crt")
	c.CAData = c.ca.certPEM
	f := func(name string) string { return filepath.Join(dir, name) }
	if err := writeFiles(map[string][]byte{
		c.CAFile:           c.ca.certPEM,
		f("apiserver.crt"): servingCert,
		f("apiserver.key"): servingKey,
		f("sa.key"):        saKey,
		f("sa.pub"):        saPub,
	}); err != nil {
		return nil, err
	}
	c.Server = "https://" + net.JoinHostPort(cfg.ServerAddresses[0].String(), strconv.Itoa(cfg.Port))

	// etcd: client and peer URLs on loopback, ports picked by etcd itself inside
	// the namespace and reported through the ready file.
	readyFile := f("etcd.ready")
	_ = os.Remove(readyFile)
	etcd, err := c.spawn("etcd", []string{cfg.Binaries.Etcd,
		"--name=lab",
		"--data-dir=" + f("etcd-data"),
		"--listen-client-urls=http://127.0.0.1:0",
		"--listen-peer-urls=http://127.0.0.1:0",
		"--ready-file=" + readyFile,
		"--log-level=warn",
		"--unsafe-no-fsync",
	})
	if err != nil {
		return nil, err
	}
	if err := waitFor(ctx, 30*time.Second, etcd, func() (bool, error) {
		b, err := os.ReadFile(readyFile)
		if err != nil {
			return false, nil
		}
		c.EtcdURL = strings.Fields(string(b))[0]
		return true, nil
	}); err != nil {
		return nil, fmt.Errorf("etcd: %w", err)
	}

	apiArgs := []string{cfg.Binaries.APIServer,
		"--etcd-servers=" + c.EtcdURL,
		"--bind-address=" + cfg.ListenAddress.String(),
		"--secure-port=" + strconv.Itoa(cfg.Port),
		"--advertise-address=" + cfg.AdvertiseAddress.String(),
		"--service-cluster-ip-range=" + serviceRanges(cfg),
		"--cert-dir=" + f("apiserver-certs"),
		"--tls-cert-file=" + f("apiserver.crt"),
		"--tls-private-key-file=" + f("apiserver.key"),
		"--client-ca-file=" + c.CAFile,
		"--service-account-key-file=" + f("sa.pub"),
		"--service-account-signing-key-file=" + f("sa.key"),
		"--service-account-issuer=" + serviceAccountIssuer,
		"--authorization-mode=RBAC",
		"--anonymous-auth=false",
		"--allow-privileged=true",
		"--profiling=" + strconv.FormatBool(cfg.Profiling),
		"--endpoint-reconciler-type=" + endpointReconciler(cfg.AdvertiseAddress),
		"--v=0",
	}
	if cfg.Audit {
		c.AuditLog = f("audit.log")
		if err := os.WriteFile(f("audit-policy.yaml"), []byte(auditPolicy), 0o644); err != nil {
			return nil, err
		}
		apiArgs = append(apiArgs, "--audit-policy-file="+f("audit-policy.yaml"), "--audit-log-path="+c.AuditLog,
			"--audit-log-format=json", "--audit-log-mode=batch", "--audit-log-batch-max-wait=1s", "--audit-log-maxsize=0")
	}
	apiserver, err := c.spawn("kube-apiserver", apiArgs)
	if err != nil {
		return nil, err
	}

	// Clients (admin = client cert in system:masters).
	certPEM, keyPEM, err := c.ca.issue("lab-admin", []string{"system:masters"}, false, nil, nil)
	if err != nil {
		return nil, err
	}
	c.AdminKubeconfig = f("admin.kubeconfig")
	if err := c.writeKubeconfig(c.AdminKubeconfig, "lab-admin", &clientcmdapi.AuthInfo{
		ClientCertificateData: certPEM, ClientKeyData: keyPEM,
	}); err != nil {
		return nil, err
	}
	c.AdminConfig = c.restConfig()
	c.AdminConfig.CertData, c.AdminConfig.KeyData = certPEM, keyPEM
	if c.Client, err = kubernetes.NewForConfig(c.AdminConfig); err != nil {
		return nil, err
	}
	if c.Dynamic, err = dynamic.NewForConfig(c.AdminConfig); err != nil {
		return nil, err
	}
	if c.APIExtensions, err = apiextensionsclient.NewForConfig(c.AdminConfig); err != nil {
		return nil, err
	}
	c.mapper = restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(c.Client.Discovery()))

	var lastErr error
	if err := waitFor(ctx, 2*time.Minute, apiserver, func() (bool, error) {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, lastErr = c.Client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(rctx)
		if lastErr != nil {
			return false, nil
		}
		_, lastErr = c.Client.CoreV1().Namespaces().Get(rctx, metav1.NamespaceDefault, metav1.GetOptions{})
		return lastErr == nil, nil
	}); err != nil {
		return nil, fmt.Errorf("kube-apiserver at %s not ready: %w (last probe: %v)", c.Server, err, lastErr)
	}
	return c, nil
}

// auditPolicy logs each request once, when its response is complete, without
// bodies.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived, ResponseStarted]
rules:
- level: Metadata
`

// endpointReconciler keeps the default lease reconciler unless the advertised
// address is loopback, which the Endpoints API refuses.
func endpointReconciler(a netip.Addr) string {
	if a.IsLoopback() {
		return "none"
	}
	return "lease"
}

func (c *Cluster) spawn(name string, argv []string) (*process, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, err := startProcess(name, c.cfg.Wrap, argv, filepath.Join(c.Dir, name+".log"), c.cfg.Log)
	if err != nil {
		return nil, err
	}
	c.procs = append(c.procs, p)
	return p, nil
}

// waitFor polls cond every 50 ms until it is true, the process exits, or timeout.
func waitFor(ctx context.Context, timeout time.Duration, p *process, cond func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-p.done:
			return p.exitError()
		case <-ctx.Done():
			return fmt.Errorf("%w; last lines of %s:\n%s", ctx.Err(), p.logPath, tail(p.logPath, 30))
		case <-tick.C:
		}
	}
}

// Stop ends kube-apiserver and etcd (SIGTERM to their process groups, SIGKILL
// after 5 s) and waits until they are reaped. It is idempotent and safe to call on
// a partly started cluster.
func (c *Cluster) Stop() {
	c.stopOnce.Do(func() {
		c.mu.Lock()
		procs := c.procs
		c.mu.Unlock()
		for i := len(procs) - 1; i >= 0; i-- {
			procs[i].stop(5 * time.Second)
		}
	})
}

// PIDs returns the process ids of the cluster's processes (etcd first).
func (c *Cluster) PIDs() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	var pids []int
	for _, p := range c.procs {
		pids = append(pids, p.pid())
	}
	return pids
}

// Config returns the configuration the cluster runs with, defaults filled in.
func (c *Cluster) Config() Config { return c.cfg }

// restConfig is a rest.Config for the cluster without credentials.
func (c *Cluster) restConfig() *rest.Config {
	return &rest.Config{
		Host:            c.Server,
		TLSClientConfig: rest.TLSClientConfig{CAData: c.CAData},
		QPS:             200,
		Burst:           400,
		Timeout:         30 * time.Second,
	}
}

func (c *Cluster) writeKubeconfig(path, user string, auth *clientcmdapi.AuthInfo) error {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["lab"] = &clientcmdapi.Cluster{Server: c.Server, CertificateAuthorityData: c.CAData}
	kc.AuthInfos[user] = auth
	kc.Contexts["lab"] = &clientcmdapi.Context{Cluster: "lab", AuthInfo: user}
	kc.CurrentContext = "lab"
	return clientcmd.WriteToFile(*kc, path)
}

// mapperReset forgets cached discovery (after CRDs change).
func (c *Cluster) mapperReset() { c.mapper.Reset() }
