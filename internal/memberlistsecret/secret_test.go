package memberlistsecret

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

func get(t *testing.T, c *fake.Clientset) *corev1.Secret {
	t.Helper()
	s, err := c.CoreV1().Secrets("ironlb-system").Get(context.Background(), "ironlb-memberlist", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// The first call creates a random, immutable secret; later calls leave it as it
// is, so every speaker keeps deriving the same key.
func TestEnsureCreatesOnce(t *testing.T) {
	ctx := context.Background()
	c := fake.NewClientset()
	created, err := Ensure(ctx, c, "ironlb-system", "ironlb-memberlist")
	if err != nil || !created {
		t.Fatalf("first Ensure: created %v, %v", created, err)
	}
	first := get(t, c)
	if n := len(first.Data[Key]); n < 32 {
		t.Errorf("secret of %d bytes", n)
	}
	if first.Immutable == nil || !*first.Immutable {
		t.Error("the Secret is not immutable: an edit would split the speakers")
	}
	for i := 0; i < 3; i++ {
		created, err := Ensure(ctx, c, "ironlb-system", "ironlb-memberlist")
		if err != nil || created {
			t.Fatalf("Ensure again: created %v, %v", created, err)
		}
	}
	if !bytes.Equal(get(t, c).Data[Key], first.Data[Key]) {
		t.Error("the secret changed")
	}

	// Another cluster gets another secret.
	c2 := fake.NewClientset()
	if _, err := Ensure(ctx, c2, "ironlb-system", "ironlb-memberlist"); err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(get(t, c2).Data[Key], first.Data[Key]) {
		t.Error("two clusters got the same secret")
	}
}

// Two replicas racing: the one whose CREATE loses reads the winner's secret.
func TestEnsureLosesRaceGracefully(t *testing.T) {
	ctx := context.Background()
	c := fake.NewClientset()
	winner := []byte("the-winner-created-this-secret-0123456789")
	c.PrependReactor("create", "secrets", func(a k8stesting.Action) (bool, runtime.Object, error) {
		// The other replica's create lands first.
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "ironlb-memberlist", Namespace: "ironlb-system"}, Data: map[string][]byte{Key: winner}}
		if err := c.Tracker().Add(s); err != nil {
			t.Fatal(err)
		}
		return true, nil, apierrors.NewAlreadyExists(schema.GroupResource{Resource: "secrets"}, "ironlb-memberlist")
	})
	created, err := Ensure(ctx, c, "ironlb-system", "ironlb-memberlist")
	if err != nil || created {
		t.Fatalf("created %v, %v", created, err)
	}
	if !bytes.Equal(get(t, c).Data[Key], winner) {
		t.Error("the winner's secret was replaced")
	}
}

// A Secret of that name that is not usable is reported and left alone.
func TestEnsureRefusesUnusableSecret(t *testing.T) {
	ctx := context.Background()
	existing := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "ironlb-memberlist", Namespace: "ironlb-system"}, Data: map[string][]byte{"other": []byte("x")}}
	c := fake.NewClientset(existing)
	_, err := Ensure(ctx, c, "ironlb-system", "ironlb-memberlist")
	if err == nil || !strings.Contains(err.Error(), "at least 16") {
		t.Fatalf("unusable Secret: %v", err)
	}
	if s := get(t, c); len(s.Data) != 1 || string(s.Data["other"]) != "x" {
		t.Errorf("the existing Secret was changed: %v", s.Data)
	}
}

func TestEnsureReportsAPIErrors(t *testing.T) {
	c := fake.NewClientset()
	c.PrependReactor("get", "secrets", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "secrets"}, "ironlb-memberlist", errors.New("RBAC"))
	})
	if _, err := Ensure(context.Background(), c, "ironlb-system", "ironlb-memberlist"); !apierrors.IsForbidden(err) {
		t.Fatalf("a forbidden GET: %v", err)
	}
}
