// Package pprofmux serves Go's runtime profiles (net/http/pprof) on a
// binary's own mux, for its --profiling flag.
package pprofmux

import (
	"net/http"
	"net/http/pprof"
)

// Register adds net/http/pprof's handlers under /debug/pprof/ to mux. They
// cost nothing until asked, but a CPU profile or trace slows the process while
// it runs, so the binaries register them only when the operator asks.
func Register(mux *http.ServeMux) {
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
}
