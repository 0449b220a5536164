package bgp

import (
	"errors"
	"sort"

	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
	"k8s.io/klog/v2"
)

// gobgpLogger sends GoBGP's logs to klog: errors as errors, warnings at V(0),
// informational messages at V(2), debug at V(5). GoBGP asks for the level
// before building expensive debug messages, so GetLevel follows klog's
// verbosity.
type gobgpLogger struct{ log klog.Logger }

func (l gobgpLogger) kv(fields gobgplog.Fields) []any {
	keys := make([]string, 0, len(fields))
	for k := range fields {
		if k != gobgplog.FieldFacility {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	kv := make([]any, 0, 2*len(keys))
	for _, k := range keys {
		kv = append(kv, k, fields[k])
	}
	return kv
}

func (l gobgpLogger) Panic(msg string, fields gobgplog.Fields) {
	l.log.Error(errors.New(msg), "GoBGP panic", l.kv(fields)...)
	panic(msg)
}

func (l gobgpLogger) Fatal(msg string, fields gobgplog.Fields) {
	// GoBGP calls Fatal where it cannot continue; a library must not exit
	// the process, so this is logged as an error and GoBGP's caller
	// continues as after a failed call.
	l.log.Error(errors.New(msg), "GoBGP fatal error", l.kv(fields)...)
}

func (l gobgpLogger) Error(msg string, fields gobgplog.Fields) {
	l.log.Error(errors.New(msg), "GoBGP error", l.kv(fields)...)
}

func (l gobgpLogger) Warn(msg string, fields gobgplog.Fields) { l.log.Info(msg, l.kv(fields)...) }

func (l gobgpLogger) Info(msg string, fields gobgplog.Fields) { l.log.V(2).Info(msg, l.kv(fields)...) }

func (l gobgpLogger) Debug(msg string, fields gobgplog.Fields) { l.log.V(5).Info(msg, l.kv(fields)...) }

func (l gobgpLogger) SetLevel(gobgplog.LogLevel) {}

func (l gobgpLogger) GetLevel() gobgplog.LogLevel {
	switch {
	case l.log.V(5).Enabled():
		return gobgplog.DebugLevel
	case l.log.V(2).Enabled():
		return gobgplog.InfoLevel
	}
	return gobgplog.WarnLevel
}
