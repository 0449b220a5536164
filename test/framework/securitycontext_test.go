package framework

import (
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func ptr[T any](v T) *T { return &v }

func caps(t *testing.T, names ...string) Caps {
	t.Helper()
	var c Caps
	for _, n := range names {
		b, err := ParseCap(n)
		if err != nil {
			t.Fatal(err)
		}
		c |= b
	}
	return c
}

// What a container runtime gives each kind of securityContext ironlb ships.
func TestContainerIdentity(t *testing.T) {
	nonRootPod := &corev1.PodSecurityContext{RunAsNonRoot: ptr(true), RunAsUser: ptr(int64(65532)), RunAsGroup: ptr(int64(65532))}
	dropAll := &corev1.SecurityContext{AllowPrivilegeEscalation: ptr(false), Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}}
	speaker := &corev1.SecurityContext{
		RunAsUser: ptr(int64(0)), AllowPrivilegeEscalation: ptr(false),
		Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}, Add: []corev1.Capability{"NET_ADMIN", "NET_RAW"}},
	}
	for _, tc := range []struct {
		name    string
		pod     *corev1.PodSecurityContext
		sc      *corev1.SecurityContext
		want    Identity
		wantErr string
	}{
		{"controller: non-root, nothing", nonRootPod, dropAll, Identity{UID: 65532, GID: 65532, NoNewPrivs: true}, ""},
		{"speaker: root with two capabilities", nil, speaker,
			Identity{UID: 0, GID: 0, Bounding: caps(t, "NET_ADMIN", "NET_RAW"), Effective: caps(t, "NET_ADMIN", "NET_RAW"), Permitted: caps(t, "NET_ADMIN", "NET_RAW"), NoNewPrivs: true}, ""},
		{"non-root with an added capability: only bounding", nonRootPod,
			&corev1.SecurityContext{Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}, Add: []corev1.Capability{"NET_BIND_SERVICE"}}},
			Identity{UID: 65532, GID: 65532, Bounding: caps(t, "NET_BIND_SERVICE")}, ""},
		{"nothing said: the image's user, the runtime's default capabilities", nil, nil,
			Identity{UID: 65532, GID: 65532, Bounding: caps(t, runtimeDefaultCaps...)}, ""},
		{"root, default capabilities minus NET_RAW", nil, &corev1.SecurityContext{RunAsUser: ptr(int64(0)), Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"NET_RAW"}}},
			Identity{Bounding: caps(t, runtimeDefaultCaps...) &^ caps(t, "NET_RAW"), Effective: caps(t, runtimeDefaultCaps...) &^ caps(t, "NET_RAW"), Permitted: caps(t, runtimeDefaultCaps...) &^ caps(t, "NET_RAW")}, ""},
		{"groups", &corev1.PodSecurityContext{RunAsUser: ptr(int64(1000)), FSGroup: ptr(int64(2000)), SupplementalGroups: []int64{3000, 2000}}, dropAll,
			Identity{UID: 1000, GID: 0, Groups: []uint32{2000, 3000}, NoNewPrivs: true}, ""},
		{"privileged is refused", nil, &corev1.SecurityContext{Privileged: ptr(true)}, Identity{}, "privileged"},
		{"runAsNonRoot as root is refused", nonRootPod, speaker, Identity{}, "runAsNonRoot"},
		{"unknown capability", nil, &corev1.SecurityContext{Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"NET_TELEPATHY"}}}, Identity{}, "unknown capability"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := &corev1.PodSpec{SecurityContext: tc.pod}
			got, err := ContainerIdentity(pod, &corev1.Container{Name: "c", SecurityContext: tc.sc})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := tc.want.Diff(got); d != "" {
				t.Error(d)
			}
		})
	}
}

// setpriv with SetprivArgs gives a process exactly the identity asked for, and
// Diff sees every difference (so a test using them can fail).
func TestSetprivGivesTheIdentity(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (setpriv changes user and capabilities)")
	}
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("setpriv (util-linux) is not installed")
	}
	for _, want := range []Identity{
		{UID: 65532, GID: 65532, NoNewPrivs: true},
		{UID: 0, GID: 0, Bounding: caps(t, "NET_ADMIN", "NET_RAW"), Effective: caps(t, "NET_ADMIN", "NET_RAW"), Permitted: caps(t, "NET_ADMIN", "NET_RAW"), NoNewPrivs: true},
		{UID: 1000, GID: 0, Groups: []uint32{2000, 3000}, Bounding: caps(t, "NET_BIND_SERVICE")},
	} {
		out, err := exec.Command(append(SetprivArgs(want), "cat", "/proc/self/status")[0], append(SetprivArgs(want), "cat", "/proc/self/status")[1:]...).CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %v\n%s", SetprivArgs(want), err, out)
		}
		got, err := parseStatus(string(out))
		if err != nil {
			t.Fatal(err)
		}
		if d := want.Diff(got); d != "" {
			t.Errorf("%v: %s", SetprivArgs(want), d)
		}
		// One capability more or less is seen.
		more := want
		more.Bounding |= caps(t, "SYS_ADMIN")
		if more.Diff(got) == "" || !strings.Contains(more.Diff(got), "SYS_ADMIN") {
			t.Errorf("Diff misses an extra capability")
		}
		if !slices.Equal(got.Groups, want.Groups) {
			t.Errorf("groups %v", got.Groups)
		}
	}
}
