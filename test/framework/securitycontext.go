package framework

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Identity is what a container process runs as: the user, groups and
// capability sets a container runtime (containerd with runc, their defaults)
// gives it for a Pod's securityContext, and what `setpriv` reproduces for a
// process in the lab.
type Identity struct {
	UID, GID uint32
	Groups   []uint32
	// Bounding is the capability bounding set: the container's capability list.
	Bounding Caps
	// Effective and Permitted: the list for root, nothing for other users (the
	// runtimes set no ambient capabilities).
	Effective, Permitted Caps
	// NoNewPrivs is allowPrivilegeEscalation: false.
	NoNewPrivs bool
}

// Caps is a set of Linux capabilities as the bit mask /proc/<pid>/status shows.
type Caps uint64

// capNumbers are the capabilities by name (include/uapi/linux/capability.h).
var capNumbers = map[string]uint{
	"CHOWN": 0, "DAC_OVERRIDE": 1, "DAC_READ_SEARCH": 2, "FOWNER": 3, "FSETID": 4,
	"KILL": 5, "SETGID": 6, "SETUID": 7, "SETPCAP": 8, "LINUX_IMMUTABLE": 9,
	"NET_BIND_SERVICE": 10, "NET_BROADCAST": 11, "NET_ADMIN": 12, "NET_RAW": 13,
	"IPC_LOCK": 14, "IPC_OWNER": 15, "SYS_MODULE": 16, "SYS_RAWIO": 17,
	"SYS_CHROOT": 18, "SYS_PTRACE": 19, "SYS_PACCT": 20, "SYS_ADMIN": 21,
	"SYS_BOOT": 22, "SYS_NICE": 23, "SYS_RESOURCE": 24, "SYS_TIME": 25,
	"SYS_TTY_CONFIG": 26, "MKNOD": 27, "LEASE": 28, "AUDIT_WRITE": 29,
	"AUDIT_CONTROL": 30, "SETFCAP": 31, "MAC_OVERRIDE": 32, "MAC_ADMIN": 33,
	"SYSLOG": 34, "WAKE_ALARM": 35, "BLOCK_SUSPEND": 36, "AUDIT_READ": 37,
	"PERFMON": 38, "BPF": 39, "CHECKPOINT_RESTORE": 40,
}

// runtimeDefaultCaps are the capabilities containerd gives a container that
// drops none (its oci.WithDefaultSpec; Docker's list is the same).
var runtimeDefaultCaps = []string{"CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID",
	"SETUID", "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE"}

// ParseCap turns "NET_ADMIN" or "CAP_NET_ADMIN" (any case) into its set.
func ParseCap(name string) (Caps, error) {
	n := strings.TrimPrefix(strings.ToUpper(name), "CAP_")
	bit, ok := capNumbers[n]
	if !ok {
		return 0, fmt.Errorf("unknown capability %q", name)
	}
	return 1 << bit, nil
}

// Names lists the capabilities of c, sorted.
func (c Caps) Names() []string {
	var out []string
	for name, bit := range capNumbers {
		if c&(1<<bit) != 0 {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

func (c Caps) String() string {
	if c == 0 {
		return "none"
	}
	return strings.Join(c.Names(), ",")
}

// ImageUser is the user an image runs as when the Pod does not say: ironlb's
// image (tools/image) runs as 65532:65532.
var ImageUser = struct{ UID, GID uint32 }{65532, 65532}

// ContainerIdentity computes what container c of pod runs as. It refuses what
// ironlb's manifests must never ask for (privileged containers) and what the
// kubelet would refuse (runAsNonRoot with user 0).
func ContainerIdentity(pod *corev1.PodSpec, c *corev1.Container) (Identity, error) {
	psc := pod.SecurityContext
	if psc == nil {
		psc = &corev1.PodSecurityContext{}
	}
	sc := c.SecurityContext
	if sc == nil {
		sc = &corev1.SecurityContext{}
	}
	if sc.Privileged != nil && *sc.Privileged {
		return Identity{}, fmt.Errorf("container %s is privileged: every capability and device of the host", c.Name)
	}
	if pod.HostPID || pod.HostIPC {
		return Identity{}, fmt.Errorf("pod of container %s shares the host's PID or IPC namespace", c.Name)
	}
	id := Identity{UID: ImageUser.UID, GID: ImageUser.GID}
	switch {
	case sc.RunAsUser != nil:
		id.UID = uint32(*sc.RunAsUser)
	case psc.RunAsUser != nil:
		id.UID = uint32(*psc.RunAsUser)
	}
	switch {
	case sc.RunAsGroup != nil:
		id.GID = uint32(*sc.RunAsGroup)
	case psc.RunAsGroup != nil:
		id.GID = uint32(*psc.RunAsGroup)
	case id.UID != ImageUser.UID:
		id.GID = 0 // the image has no passwd entry with a group for this user
	}
	nonRoot := sc.RunAsNonRoot
	if nonRoot == nil {
		nonRoot = psc.RunAsNonRoot
	}
	if nonRoot != nil && *nonRoot && id.UID == 0 {
		return Identity{}, fmt.Errorf("container %s: runAsNonRoot with user 0: the kubelet refuses to start it", c.Name)
	}
	for _, g := range psc.SupplementalGroups {
		id.Groups = append(id.Groups, uint32(g))
	}
	if psc.FSGroup != nil {
		id.Groups = append(id.Groups, uint32(*psc.FSGroup))
	}
	slices.Sort(id.Groups)
	id.Groups = slices.Compact(id.Groups)

	caps := Caps(0)
	for _, n := range runtimeDefaultCaps {
		b, _ := ParseCap(n)
		caps |= b
	}
	if sc.Capabilities != nil {
		for _, d := range sc.Capabilities.Drop {
			if strings.EqualFold(string(d), "ALL") {
				caps = 0
				continue
			}
			b, err := ParseCap(string(d))
			if err != nil {
				return Identity{}, fmt.Errorf("container %s: %w", c.Name, err)
			}
			caps &^= b
		}
		for _, a := range sc.Capabilities.Add {
			if strings.EqualFold(string(a), "ALL") {
				return Identity{}, fmt.Errorf("container %s adds ALL capabilities", c.Name)
			}
			b, err := ParseCap(string(a))
			if err != nil {
				return Identity{}, fmt.Errorf("container %s: %w", c.Name, err)
			}
			caps |= b
		}
	}
	id.Bounding = caps
	if id.UID == 0 {
		id.Effective, id.Permitted = caps, caps
	}
	// Kubernetes: privilege escalation is allowed unless the field says false.
	id.NoNewPrivs = sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation
	return id, nil
}

// SetprivArgs is the setpriv(1) command prefix (util-linux) that starts a
// program with identity id: user and groups, the bounding set, no inheritable
// or ambient capabilities, and no_new_privs when asked. Started by root, the
// program then has exactly the sets a container runtime would give it.
func SetprivArgs(id Identity) []string {
	args := []string{"setpriv", "--reuid=" + strconv.FormatUint(uint64(id.UID), 10), "--regid=" + strconv.FormatUint(uint64(id.GID), 10)}
	if len(id.Groups) == 0 {
		args = append(args, "--clear-groups")
	} else {
		var gs []string
		for _, g := range id.Groups {
			gs = append(gs, strconv.FormatUint(uint64(g), 10))
		}
		args = append(args, "--groups="+strings.Join(gs, ","))
	}
	bound := "-all"
	for _, n := range id.Bounding.Names() {
		bound += ",+" + strings.ToLower(n)
	}
	args = append(args, "--bounding-set="+bound, "--inh-caps=-all", "--ambient-caps=-all")
	if id.NoNewPrivs {
		args = append(args, "--no-new-privs")
	}
	return append(args, "--")
}

// ProcessIdentity reads what process pid runs as from /proc/<pid>/status.
func ProcessIdentity(pid int) (Identity, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return Identity{}, err
	}
	id, err := parseStatus(string(b))
	if err != nil {
		return Identity{}, fmt.Errorf("/proc/%d/status: %w", pid, err)
	}
	return id, nil
}

// parseStatus reads the identity fields of a /proc/<pid>/status text. A
// process with inheritable or ambient capabilities is an error: no container
// runtime gives those.
func parseStatus(status string) (Identity, error) {
	var id Identity
	seen := 0
	for _, line := range strings.Split(status, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		hex := func(dst *Caps) error {
			if len(f) != 1 {
				return fmt.Errorf("%s: %q", k, v)
			}
			n, err := strconv.ParseUint(f[0], 16, 64)
			*dst = Caps(n)
			seen++
			return err
		}
		var err error
		switch k {
		case "Uid":
			var n uint64
			if len(f) == 4 {
				n, err = strconv.ParseUint(f[1], 10, 32) // effective
				id.UID = uint32(n)
				seen++
			}
		case "Gid":
			var n uint64
			if len(f) == 4 {
				n, err = strconv.ParseUint(f[1], 10, 32)
				id.GID = uint32(n)
				seen++
			}
		case "Groups":
			for _, g := range f {
				n, err2 := strconv.ParseUint(g, 10, 32)
				if err2 != nil {
					err = err2
				}
				id.Groups = append(id.Groups, uint32(n))
			}
		case "CapEff":
			err = hex(&id.Effective)
		case "CapPrm":
			err = hex(&id.Permitted)
		case "CapBnd":
			err = hex(&id.Bounding)
		case "CapInh", "CapAmb":
			var c Caps
			if err = hex(&c); err == nil && c != 0 {
				err = fmt.Errorf("%s %v", k, c)
			}
		case "NoNewPrivs":
			id.NoNewPrivs = len(f) == 1 && f[0] == "1"
			seen++
		}
		if err != nil {
			return Identity{}, err
		}
	}
	if seen != 8 {
		return Identity{}, errors.New("fields missing")
	}
	slices.Sort(id.Groups)
	return id, nil
}

// Diff describes how got differs from want ("" when equal).
func (want Identity) Diff(got Identity) string {
	var d []string
	if got.UID != want.UID || got.GID != want.GID {
		d = append(d, fmt.Sprintf("runs as %d:%d, want %d:%d", got.UID, got.GID, want.UID, want.GID))
	}
	if !slices.Equal(got.Groups, want.Groups) {
		d = append(d, fmt.Sprintf("groups %v, want %v", got.Groups, want.Groups))
	}
	for _, s := range []struct {
		name      string
		got, want Caps
	}{{"effective", got.Effective, want.Effective}, {"permitted", got.Permitted, want.Permitted}, {"bounding", got.Bounding, want.Bounding}} {
		if s.got != s.want {
			d = append(d, fmt.Sprintf("%s capabilities %v, want %v (extra: %v, missing: %v)", s.name, s.got, s.want, s.got&^s.want, s.want&^s.got))
		}
	}
	if got.NoNewPrivs != want.NoNewPrivs {
		d = append(d, fmt.Sprintf("no_new_privs %v, want %v", got.NoNewPrivs, want.NoNewPrivs))
	}
	return strings.Join(d, "; ")
}
