package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// A MetalLB speaker's log (go-kit JSON lines) after node3 died and came back,
// node2 left for good, and a line cut by a concurrent write.
const speakerLog = `{"caller":"main.go:108","level":"info","msg":"MetalLB speaker starting (commit v0.15.2, branch main)","ts":"2026-11-26T18:00:00Z","version":"0.15.2"}
{"caller":"speakerlist.go:330","level":"info","msg":"node event - forcing sync","node addr":"192.0.2.11","node event":"NodeJoin","node name":"node1","ts":"2026-11-26T18:00:00Z"}
{"caller":"speakerlist.go:330","level":"info","msg":"node event - forcing sync","node addr":"192.0.2.12","node event":"NodeJoin","node name":"node2","ts":"2026-11-26T18:00:01Z"}
{"caller":"speakerlist.go:330","level":"info","msg":"node event - forcing sync","node addr":"192.0.2.13","node event":"NodeJoin","node name":"node3","ts":"2026-11-26T18:00:01Z"}
{"caller":"speakerlist.go:330","level":"info","msg":"node event - forcing sync","node addr":"192.0.2.13","node event":"NodeLeave","node name":"node3","ts":"2026-11-26T18:00:05Z"}
{"caller":"speakerlist.go:330","level":"info","msg":"node event - forcing sync","node addr":"192.0.2.13","node event":"NodeJoin","node name":"node3","ts":"2026-11-26T18:00:09Z"}
{"caller":"speakerlist.go:330","level":"info","msg":"node event - forcing sync","node addr":"192.0.2.12","node event":"NodeLeave","node name":"node2","ts":"2026-11-26T18:00:12Z"}
{"caller":"speakerlist.go:330","level":"info","msg":"node event - forcing sync","node addr":"192.0.2.12","node event":"NodeJo
`

func TestMetalLBMembers(t *testing.T) {
	p := filepath.Join(t.TempDir(), "speaker.log")
	if err := os.WriteFile(p, []byte(speakerLog), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := metallbMembers(p, "node1")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"node1", "node3"}; !slices.Equal(got, want) {
		t.Errorf("members = %v, want %v", got, want)
	}
	// A speaker that logged nothing yet still counts itself.
	empty := filepath.Join(t.TempDir(), "empty.log")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if got, _ := metallbMembers(empty, "node2"); !slices.Equal(got, []string{"node2"}) {
		t.Errorf("members of a fresh speaker = %v, want [node2]", got)
	}
}

func TestAnnouncedRE(t *testing.T) {
	text := `# TYPE metallb_speaker_announced gauge
metallb_speaker_announced{ip="192.0.2.200",node="node2",protocol="layer2",service="bench/svc-0"} 1
metallb_speaker_announced{ip="192.0.2.201",node="node2",protocol="bgp",service="bench/svc-1"} 1
metallb_speaker_announced{ip="192.0.2.202",node="node2",protocol="layer2",service="bench/svc-2"} 0
`
	m := announcedRE.FindAllStringSubmatch(text, -1)
	if len(m) != 1 || m[0][1] != "192.0.2.200" || m[0][2] != "node2" {
		t.Errorf("announced = %q, want only 192.0.2.200 on node2 (layer2, value 1)", m)
	}
}

func TestRatioLines(t *testing.T) {
	ms := func(xs ...int) []time.Duration {
		var out []time.Duration
		for _, x := range xs {
			out = append(out, time.Duration(x)*time.Millisecond)
		}
		return out
	}
	lines := ratioLines(
		map[string][]time.Duration{"kill": ms(500, 600, 700), "only ironlb": ms(1)},
		map[string][]time.Duration{"kill": ms(3000, 3600, 4200), "only metallb": ms(1)})
	if len(lines) != 3 {
		t.Fatalf("lines = %q, want a heading and one ratio line", lines)
	}
	if !strings.Contains(lines[2], "p50 3.6s / 600ms = 6.0x") || !strings.Contains(lines[2], "p95 4.2s / 700ms = 6.0x") {
		t.Errorf("ratio line = %q", lines[2])
	}
}
