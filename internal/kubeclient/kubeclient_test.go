package kubeclient

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// A typed client built from Builtin asks for protobuf, and cfg itself (which
// dynamic clients of custom resources use) is left as it was.
func TestBuiltinAsksForProtobufAndLeavesCfgAlone(t *testing.T) {
	accepts := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case accepts <- r.Header.Get("Accept"):
		default:
		}
		http.Error(w, "not here", http.StatusNotFound)
	}))
	defer srv.Close()
	cfg := &rest.Config{Host: srv.URL}
	client, err := kubernetes.NewForConfig(Builtin(cfg))
	if err != nil {
		t.Fatal(err)
	}
	_, _ = client.CoreV1().Services("default").Get(t.Context(), "web", metav1.GetOptions{})
	if got := <-accepts; !strings.HasPrefix(got, "application/vnd.kubernetes.protobuf") {
		t.Errorf("Accept = %q, want protobuf first", got)
	}
	if cfg.ContentType != "" || cfg.AcceptContentTypes != "" {
		t.Errorf("cfg changed: ContentType %q, AcceptContentTypes %q", cfg.ContentType, cfg.AcceptContentTypes)
	}
}
