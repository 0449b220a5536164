package main

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestMetricsHandlerServesProfilesOnlyWithProfiling(t *testing.T) {
	for _, tc := range []struct {
		profiling bool
		want      int
	}{
		{profiling: false, want: http.StatusNotFound},
		{profiling: true, want: http.StatusOK},
	} {
		h := metricsHandler(prometheus.NewRegistry(), func() error { return nil }, tc.profiling)
		for _, path := range []string{"/debug/pprof/", "/debug/pprof/cmdline"} {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
			if rec.Code != tc.want {
				t.Errorf("profiling=%v: GET %s = %d, want %d", tc.profiling, path, rec.Code, tc.want)
			}
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		if rec.Code != http.StatusOK {
			t.Errorf("profiling=%v: GET /metrics = %d, want 200", tc.profiling, rec.Code)
		}
	}
}

func TestMetricsHandlerReadyz(t *testing.T) {
	notReady := errors.New("BGP sessions not configured yet")
	for _, tc := range []struct {
		err  error
		want int
	}{{nil, http.StatusOK}, {notReady, http.StatusServiceUnavailable}} {
		rec := httptest.NewRecorder()
		metricsHandler(prometheus.NewRegistry(), func() error { return tc.err }, false).
			ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		if rec.Code != tc.want {
			t.Errorf("ready()=%v: GET /readyz = %d, want %d", tc.err, rec.Code, tc.want)
		}
	}
}
