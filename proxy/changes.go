package proxy

import (
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"
)

// changeTracker records Services, EndpointSlices and this node's zone as the
// informers deliver them, and which Services changed since the last sync. An
// event costs O(1) plus the size of the object's key; the sync loop takes the
// changed Services with take.
type changeTracker struct {
	nodeName string

	mu       sync.Mutex
	services map[types.NamespacedName]*v1.Service
	slices   map[types.NamespacedName]map[string]*discovery.EndpointSlice
	dirty    map[types.NamespacedName]struct{}
	zone     string
	// allDirty is set when something every Service depends on changed (the zone).
	allDirty bool
	// queuedAt is when the oldest change not yet synced arrived (zero: none).
	queuedAt time.Time

	changed chan struct{}
}

func newChangeTracker(nodeName string) *changeTracker {
	return &changeTracker{
		nodeName: nodeName,
		services: map[types.NamespacedName]*v1.Service{},
		slices:   map[types.NamespacedName]map[string]*discovery.EndpointSlice{},
		dirty:    map[types.NamespacedName]struct{}{},
		changed:  make(chan struct{}, 1),
	}
}

func (t *changeTracker) markLocked(n types.NamespacedName) {
	t.dirty[n] = struct{}{}
	if t.queuedAt.IsZero() {
		t.queuedAt = time.Now()
	}
	select {
	case t.changed <- struct{}{}:
	default:
	}
}

func (t *changeTracker) setService(svc *v1.Service) {
	n := types.NamespacedName{Namespace: svc.Namespace, Name: svc.Name}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.services[n] = svc
	t.markLocked(n)
}

func (t *changeTracker) deleteService(n types.NamespacedName) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.services[n]; !ok {
		return
	}
	delete(t.services, n)
	t.markLocked(n)
}

// sliceService names the Service an EndpointSlice belongs to.
func sliceService(es *discovery.EndpointSlice) (types.NamespacedName, bool) {
	name := es.Labels[discovery.LabelServiceName]
	if name == "" {
		return types.NamespacedName{}, false
	}
	return types.NamespacedName{Namespace: es.Namespace, Name: name}, true
}

func (t *changeTracker) setSlice(es *discovery.EndpointSlice) {
	n, ok := sliceService(es)
	if !ok {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	m := t.slices[n]
	if m == nil {
		m = map[string]*discovery.EndpointSlice{}
		t.slices[n] = m
	}
	m[es.Name] = es
	t.markLocked(n)
}

func (t *changeTracker) deleteSlice(es *discovery.EndpointSlice) {
	n, ok := sliceService(es)
	if !ok {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	m := t.slices[n]
	if _, had := m[es.Name]; !had {
		return
	}
	delete(m, es.Name)
	if len(m) == 0 {
		delete(t.slices, n)
	}
	t.markLocked(n)
}

// setNode takes this node's topology zone; a change re-evaluates every Service.
func (t *changeTracker) setNode(node *v1.Node) {
	if node.Name != t.nodeName {
		return
	}
	zone := node.Labels[v1.LabelTopologyZone]
	t.mu.Lock()
	defer t.mu.Unlock()
	if zone == t.zone {
		return
	}
	t.zone = zone
	t.allDirty = true
	t.markLocked(types.NamespacedName{})
}

// take returns snapshots of the changed Services (every Service when all is
// set or something all Services depend on changed), the zone, and when the
// oldest of these changes arrived; it clears the change set.
func (t *changeTracker) take(all bool) ([]serviceSnapshot, string, time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var names []types.NamespacedName
	if all || t.allDirty {
		for n := range t.services {
			names = append(names, n)
		}
		for n := range t.slices {
			if _, ok := t.services[n]; !ok {
				names = append(names, n)
			}
		}
		for n := range t.dirty {
			if _, ok := t.services[n]; !ok {
				if _, ok := t.slices[n]; !ok {
					names = append(names, n) // deleted: its state must go
				}
			}
		}
	} else {
		for n := range t.dirty {
			names = append(names, n)
		}
	}
	out := make([]serviceSnapshot, 0, len(names))
	for _, n := range names {
		if n.Name == "" {
			continue
		}
		s := serviceSnapshot{name: n, svc: t.services[n]}
		for _, es := range t.slices[n] {
			s.slices = append(s.slices, es)
		}
		out = append(out, s)
	}
	queued := t.queuedAt
	t.dirty = map[types.NamespacedName]struct{}{}
	t.allDirty = false
	t.queuedAt = time.Time{}
	return out, t.zone, queued
}
