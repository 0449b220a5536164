// Package kubeclient holds what ironlb's binaries share in building their
// Kubernetes clients.
package kubeclient

import (
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
)

// Builtin returns a copy of cfg for clients of Kubernetes' built-in types
// (Services, EndpointSlices, Nodes, Events, Leases, Secrets) that speaks
// protobuf, as Kubernetes' own components (kube-proxy, the controller
// manager, the cloud-provider framework ironlb-controller runs on) do:
// a protobuf watch event is cheaper to decode than JSON (JSON decoding was
// about a fifth of a speaker's CPU in a burst of 1,000 Services), and the API
// server encodes each event once per content type its watchers ask for, so
// one JSON watcher among protobuf ones makes it encode every event twice. Custom resources have no protobuf encoding: build their (dynamic)
// clients from cfg itself.
func Builtin(cfg *rest.Config) *rest.Config {
	out := rest.CopyConfig(cfg)
	out.ContentType = runtime.ContentTypeProtobuf
	out.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
	return out
}
