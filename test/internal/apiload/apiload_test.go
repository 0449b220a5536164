package apiload

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestParseMetricsSumsOverCodesAndVersions(t *testing.T) {
	text := `# HELP apiserver_request_total [STABLE] Counter
# TYPE apiserver_request_total counter
apiserver_request_total{code="201",component="apiserver",dry_run="",group="",resource="services",scope="resource",subresource="",verb="POST",version="v1"} 990
apiserver_request_total{code="409",component="apiserver",dry_run="",group="",resource="services",scope="resource",subresource="",verb="POST",version="v1"} 10
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="services",scope="resource",subresource="status",verb="PATCH",version="v1"} 1000
apiserver_request_total{code="201",component="apiserver",dry_run="",group="ironlb.io",resource="serviceannouncements",scope="resource",subresource="",verb="POST",version="v1alpha1"} 3e+03
apiserver_request_duration_seconds_count{verb="POST"} 7
`
	got, err := ParseMetrics(text)
	if err != nil {
		t.Fatal(err)
	}
	want := Counts{
		{Verb: "POST", Resource: "services"}:                         1000,
		{Verb: "PATCH", Resource: "services", Subresource: "status"}: 1000,
		{Verb: "POST", Resource: "serviceannouncements"}:             3000,
	}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%v: got %d, want %d", k, got[k], v)
		}
	}
	before := Counts{{Verb: "POST", Resource: "services"}: 400, {Verb: "PATCH", Resource: "services", Subresource: "status"}: 1000}
	d := got.Sub(before)
	if d[Key{Verb: "POST", Resource: "services"}] != 600 || len(d) != 2 || d.Total() != 3600 {
		t.Errorf("Sub: got %v", d)
	}
}

func TestParseMetricsBadValue(t *testing.T) {
	if _, err := ParseMetrics(`apiserver_request_total{verb="GET"} x` + "\n"); err == nil {
		t.Fatal("no error for a bad value")
	}
}

func TestReadAuditWindowAndClients(t *testing.T) {
	lines := `{"verb":"create","userAgent":"ironlb-speaker/node1","objectRef":{"resource":"events"},"stageTimestamp":"2026-11-26T10:00:01Z"}
{"verb":"create","userAgent":"ironlb-speaker/node1","objectRef":{"resource":"events"},"stageTimestamp":"2026-11-26T10:00:02Z"}
{"verb":"update","userAgent":"ironlb-controller/v0 (linux/amd64) kubernetes/x","objectRef":{"resource":"services","subresource":"status"},"stageTimestamp":"2026-11-26T10:00:02Z"}
{"verb":"create","userAgent":"ironlb-speaker/node2","objectRef":{"resource":"events"},"stageTimestamp":"2026-11-26T10:00:09Z"}
{"verb":"crea
`
	p := filepath.Join(t.TempDir(), "audit.log")
	if err := os.WriteFile(p, []byte(lines), 0o644); err != nil {
		t.Fatal(err)
	}
	from := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	got, err := ReadAudit(p, from, from.Add(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	want := Counts{
		{Client: "ironlb-speaker/node1", Verb: "create", Resource: "events"}:                          2,
		{Client: "ironlb-controller/v0", Verb: "update", Resource: "services", Subresource: "status"}: 1,
	}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%v: got %d, want %d", k, got[k], v)
		}
	}
}

func TestSeriesGroupsByLabels(t *testing.T) {
	text := `etcd_request_duration_seconds_sum{operation="create",type="/registry/services/specs"} 1.5
etcd_request_duration_seconds_sum{operation="create",type="/registry/events"} 0.5
etcd_request_duration_seconds_sum{operation="get",type="/registry/events"} 0.25
etcd_request_duration_seconds_count{operation="create",type="/registry/events"} 10
process_cpu_seconds_total 12
`
	got, err := Series(text, "etcd_request_duration_seconds_sum", "operation")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got["create"] != 2 || got["get"] != 0.25 {
		t.Errorf("got %v", got)
	}
	if cpu, _ := Series(text, "process_cpu_seconds_total"); cpu[""] != 12 {
		t.Errorf("unlabelled series: got %v", cpu)
	}
}
