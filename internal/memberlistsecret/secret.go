// Package memberlistsecret creates, once per cluster, the Secret whose bytes
// the speakers derive their memberlist gossip key from
// (ironlb-speaker --memberlist-secret-file, a mount of this Secret).
//
// Kubernetes manifests cannot hold a random value (kustomize's secretGenerator
// would put the same key in every user's repository, and a changed key would
// split the speakers), so the controller's Pod runs
// `ironlb ensure-memberlist-secret` as an init container: Ensure creates the
// Secret with fresh random bytes if it does not exist, and never changes an
// existing one. Several callers at once are safe: the API server lets one
// create win and the others read what it wrote.
//
//	created, err := memberlistsecret.Ensure(ctx, client, "ironlb-system", "ironlb-memberlist")
//
// Cost: one GET, plus one CREATE the first time.
package memberlistsecret

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Key is the Secret's data key; the speakers' volume mounts it as a file of
// that name.
const Key = "secretkey"

// minBytes is the shortest secret accepted in an existing Secret (the
// speaker's membership.MinSecretLen).
const minBytes = 16

// randomBytes is how much entropy a new secret gets (written as base64 text, so
// `kubectl get secret` shows something printable).
const randomBytes = 32

// Ensure makes sure Secret namespace/name exists with a usable Key, creating it
// with 32 random bytes when it does not exist. It reports whether this call
// created it. An existing Secret without a Key of at least 16 bytes is an
// error, not overwritten: it may be someone else's.
func Ensure(ctx context.Context, client kubernetes.Interface, namespace, name string) (created bool, err error) {
	secrets := client.CoreV1().Secrets(namespace)
	s, err := secrets.Get(ctx, name, metav1.GetOptions{})
	if err == nil {
		return false, check(s)
	}
	if !apierrors.IsNotFound(err) {
		return false, fmt.Errorf("reading Secret %s/%s: %w", namespace, name, err)
	}
	raw := make([]byte, randomBytes)
	if _, err := rand.Read(raw); err != nil {
		return false, err
	}
	s = &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: namespace,
			Labels: map[string]string{"app.kubernetes.io/part-of": "ironlb", "app.kubernetes.io/component": "memberlist"},
		},
		Type:      corev1.SecretTypeOpaque,
		Immutable: ptr(true),
		Data:      map[string][]byte{Key: []byte(base64.RawURLEncoding.EncodeToString(raw))},
	}
	_, err = secrets.Create(ctx, s, metav1.CreateOptions{})
	switch {
	case err == nil:
		return true, nil
	case apierrors.IsAlreadyExists(err):
		// Another replica created it between our GET and CREATE.
		s, err = secrets.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, fmt.Errorf("reading Secret %s/%s: %w", namespace, name, err)
		}
		return false, check(s)
	default:
		return false, fmt.Errorf("creating Secret %s/%s: %w", namespace, name, err)
	}
}

func check(s *corev1.Secret) error {
	if n := len(s.Data[Key]); n < minBytes {
		return fmt.Errorf("Secret %s/%s exists but its key %q has %d bytes, at least %d are needed (it is left as it is)", s.Namespace, s.Name, Key, n, minBytes)
	}
	return nil
}

func ptr[T any](v T) *T { return &v }
