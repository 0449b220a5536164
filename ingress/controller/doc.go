// Package controller is the Kubernetes shell of ironlb-ingress. It watches
// IngressClasses, Ingresses, Services, EndpointSlices and kubernetes.io/tls Secrets
// with client-go informers, turns the Ingresses of its IngressClass into the neutral
// form of package ingress, builds a Table on every relevant change and hands it to a
// Sink (the proxy, package ingress/server). It also reports Problems as Warning Events
// on the Ingresses and writes the address of the proxy's LoadBalancer Service into
// their status.loadBalancer.
//
// Typical use (what cmd/ironlb-ingress does):
//
//	srv, _ := server.New(server.Options{...})
//	c, err := controller.New(controller.Config{
//		Client:         clientset,
//		Sink:           srv,
//		IngressClass:   "ironlb",
//		PublishService: "ironlb-system/ironlb-ingress",
//	})
//	go srv.ListenAndServe(ctx)
//	err = c.Run(ctx)
//
// # Which Ingresses
//
// An Ingress is handled when its legacy annotation kubernetes.io/ingress.class equals
// the class name (the annotation, when present, decides alone); else when
// spec.ingressClassName names an IngressClass of that name whose spec.controller is
// ControllerName; else, for an Ingress without any class, when that IngressClass
// carries ingressclass.kubernetes.io/is-default-class: "true".
//
// # Backends and certificates
//
// A Service port of a backend is resolved to the ready addresses of the Service's
// EndpointSlices with the slice port of the same name (so targetPort names and
// numbers work, and traffic goes to endpoints directly, not to the ClusterIP). A
// missing Service or port, or an ExternalName Service, is a BackendUnavailable Event
// and the backend answers 503. TLS Secrets are looked up in the Ingress's own
// namespace only; only Secrets of type kubernetes.io/tls are watched, and each is
// parsed once per resourceVersion.
//
// # Costs
//
// Every change that matters (an Ingress spec or annotation, an IngressClass, or a
// Service, EndpointSlice or Secret that a handled Ingress references) schedules one
// rebuild; changes that arrive while a rebuild runs are coalesced into the next one.
// A rebuild costs O(handled Ingresses + their endpoints) plus ingress.Build, and
// writes only the Ingress statuses that differ. Events about unreferenced objects are
// dropped in the informer handler without a rebuild.
//
// Every replica writes statuses and Events (there is no leader election): the writes
// are idempotent, Events may appear once per replica.
package controller
