package membership

import (
	"bytes"
	"strings"

	"k8s.io/klog/v2"
)

// logWriter turns memberlist's log lines ("[LEVEL] memberlist: text") into
// klog records and counts the lines that mean a probe failed or this node was
// falsely suspected: memberlist v0.7.0 reports those only in its log. The
// cluster test that kills a member checks that the count moves, so a changed
// wording in a memberlist upgrade fails a test instead of silencing a metric.
type logWriter struct {
	node    string
	metrics *metrics
}

func (w *logWriter) Write(p []byte) (int, error) {
	line := string(bytes.TrimRight(p, "\n"))
	level, text := "", line
	if i := strings.Index(line, "] "); strings.HasPrefix(line, "[") && i > 0 {
		level, text = line[1:i], line[i+2:]
	}
	text = strings.TrimPrefix(text, "memberlist: ")
	switch {
	case strings.HasPrefix(text, "Suspect ") && strings.HasSuffix(text, "has failed, no acks received"):
		w.metrics.probeFailures.Inc()
	case strings.HasPrefix(text, "Refuting a suspect message"), strings.HasPrefix(text, "Refuting a dead message"):
		w.metrics.refutations.Inc()
	}
	switch level {
	case "DEBUG":
		klog.V(4).InfoS(text, "component", "memberlist", "node", w.node)
	case "ERR", "ERROR":
		klog.ErrorS(nil, text, "component", "memberlist", "node", w.node)
	default: // INFO, WARN: failures, suspicions, refutations, conflicts
		klog.InfoS(text, "component", "memberlist", "node", w.node, "level", strings.ToLower(level))
	}
	return len(p), nil
}
