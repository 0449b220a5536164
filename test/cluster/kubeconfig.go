package cluster

import (
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

var fileSafe = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// ClientCertKubeconfig writes Dir/<name>.kubeconfig holding a client certificate
// for user (CN) in groups (O), signed by the cluster CA, and returns its path.
func (c *Cluster) ClientCertKubeconfig(name, user string, groups []string) (string, error) {
	certPEM, keyPEM, err := c.ca.issue(user, groups, false, nil, nil)
	if err != nil {
		return "", err
	}
	path := filepath.Join(c.Dir, fileSafe.ReplaceAllString(name, "_")+".kubeconfig")
	if err := c.writeKubeconfig(path, user, &clientcmdapi.AuthInfo{
		ClientCertificateData: certPEM, ClientKeyData: keyPEM,
	}); err != nil {
		return "", err
	}
	return path, nil
}

// ServiceAccountKubeconfig writes Dir/sa-<namespace>-<sa>.kubeconfig holding a
// token for ServiceAccount namespace/sa from the TokenRequest API, and returns its
// path. The namespace and ServiceAccount are created if missing. The API server
// refuses tokens shorter than 10 minutes, so a smaller ttl is raised to 10 minutes;
// 0 means one hour. The token authenticates as
// system:serviceaccount:<namespace>:<sa> with exactly the RBAC bound to it.
func (c *Cluster) ServiceAccountKubeconfig(ctx context.Context, namespace, sa string, ttl time.Duration) (string, error) {
	switch {
	case ttl == 0:
		ttl = time.Hour
	case ttl < 10*time.Minute:
		ttl = 10 * time.Minute
	}
	if err := c.ensureNamespace(ctx, namespace); err != nil {
		return "", err
	}
	_, err := c.Client.CoreV1().ServiceAccounts(namespace).Create(ctx, &corev1.ServiceAccount{
		ObjectMeta: metav1.ObjectMeta{Name: sa, Namespace: namespace},
	}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return "", fmt.Errorf("creating ServiceAccount %s/%s: %w", namespace, sa, err)
	}
	secs := int64(ttl / time.Second)
	tr, err := c.Client.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, sa, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &secs},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("requesting a token for ServiceAccount %s/%s: %w", namespace, sa, err)
	}
	user := "system:serviceaccount:" + namespace + ":" + sa
	path := filepath.Join(c.Dir, fileSafe.ReplaceAllString("sa-"+namespace+"-"+sa, "_")+".kubeconfig")
	if err := c.writeKubeconfig(path, user, &clientcmdapi.AuthInfo{Token: tr.Status.Token}); err != nil {
		return "", err
	}
	return path, nil
}

func (c *Cluster) ensureNamespace(ctx context.Context, name string) error {
	_, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{Name: name},
	}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating namespace %s: %w", name, err)
	}
	return nil
}
