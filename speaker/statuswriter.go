package speaker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"

	"github.com/ironlb/ironlb/api/v1alpha1"
)

// statusWriter keeps the objects of one status kind (ServiceAnnouncement or
// BGPSession) that belong to this node equal to a desired set, with the least
// writes: an object is created, updated or deleted only when it differs from
// what the informer shows, so nothing is written while nothing changes, and a
// restarted speaker converges from whatever its predecessor left. It also
// deletes the objects of nodes declared gone (a speaker that died cannot clean
// up after itself).
//
// Writes happen on the writer's own goroutine, never on the speaker's event
// loop: an API server that is slow or away delays the status, not the
// announcements.
type statusWriter struct {
	res      schema.GroupVersionResource
	kind     schema.GroupVersionKind
	node     string
	client   dynamic.ResourceInterface
	informer cache.SharedIndexInformer
	// sticky are status fields that are set on create and kept on update (e.g.
	// since), not compared.
	sticky  []string
	queue   workqueue.TypedRateLimitingInterface[string]
	metrics *metrics

	mu      sync.Mutex
	desired map[string]map[string]any // name -> status
	gone    map[string]bool           // nodes whose objects are deleted
	pruning bool                      // delete this node's undesired objects
	// written holds this writer's last write of each name until the informer
	// shows any event for it: a sync that runs before the watch caught up
	// (prune and forgetNode enqueue names) compares with what was written, not
	// with the stale cache, and does not write the same change twice.
	written map[string]writtenObject
	// seen counts the informer's events per name. A write is remembered in
	// written only if no event for its name arrived while the call was in
	// flight: an event that came before the answer (the object deleted by
	// another speaker right after this create, say) means the informer
	// already knows more than the answer, and remembering the answer would
	// hide that event for good (nothing else would bring the name back).
	seen map[string]uint64
}

// writtenObject is one write the informer has not shown yet.
type writtenObject struct {
	over string                     // resourceVersion the write replaced ("" after a create)
	obj  *unstructured.Unstructured // the object as written; nil after a delete
}

// nodeIndex indexes status objects by .status.node.
const nodeIndex = "node"

func newStatusWriter(node string, res schema.GroupVersionResource, kind schema.GroupVersionKind, dyn dynamic.Interface, informer cache.SharedIndexInformer, m *metrics, sticky ...string) (*statusWriter, error) {
	w := &statusWriter{
		res: res, kind: kind, node: node, client: dyn.Resource(res), informer: informer, sticky: sticky, metrics: m,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](200*time.Millisecond, 30*time.Second),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: res.Resource}),
		desired: map[string]map[string]any{},
		gone:    map[string]bool{},
		written: map[string]writtenObject{},
		seen:    map[string]uint64{},
	}
	if err := informer.AddIndexers(cache.Indexers{nodeIndex: func(obj any) ([]string, error) {
		if n := objectNode(obj); n != "" {
			return []string{n}, nil
		}
		return nil, nil
	}}); err != nil {
		return nil, fmt.Errorf("indexing %s: %w", res.Resource, err)
	}
	_, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    w.observe,
		UpdateFunc: func(_, obj any) { w.observe(obj) },
		DeleteFunc: w.observe,
	})
	if err != nil {
		return nil, fmt.Errorf("watching %s: %w", res.Resource, err)
	}
	return w, nil
}

// objectNode returns .status.node of a status object.
func objectNode(obj any) string {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return ""
	}
	n, _, _ := unstructured.NestedString(u.Object, "status", "node")
	return n
}

// observe enqueues objects this writer may have to act on: its own node's
// (someone else edited or deleted them) and gone nodes'.
func (w *statusWriter) observe(obj any) {
	key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	if err != nil {
		return
	}
	n := objectNode(obj)
	w.mu.Lock()
	delete(w.written, key)
	w.seen[key]++
	mine := n == w.node || w.gone[n]
	w.mu.Unlock()
	if mine {
		w.queue.Add(key)
	}
}

// set makes status the desired content of object name (nil: the object should
// not exist). It enqueues the name only when the desired content changed.
func (w *statusWriter) set(name string, status any) {
	var m map[string]any
	if status != nil {
		var err error
		if m, err = runtime.DefaultUnstructuredConverter.ToUnstructured(status); err != nil {
			klog.ErrorS(err, "Encoding status", "resource", w.res.Resource, "name", name)
			return
		}
	}
	w.mu.Lock()
	old, had := w.desired[name]
	switch {
	case m == nil && !had:
		w.mu.Unlock()
		return
	case m == nil:
		delete(w.desired, name)
	default:
		if had && w.equalStatus(old, m) {
			w.mu.Unlock()
			return
		}
		w.desired[name] = m
	}
	w.mu.Unlock()
	w.queue.Add(name)
}

// prune starts deleting this node's objects that are not desired (once the
// desired set is complete: after the speaker's first full computation).
func (w *statusWriter) prune() {
	w.mu.Lock()
	w.pruning = true
	w.mu.Unlock()
	w.enqueueNode(w.node)
}

// forgetNode deletes every object of a node whose speaker is gone.
func (w *statusWriter) forgetNode(node string) {
	if node == w.node {
		return
	}
	w.mu.Lock()
	w.gone[node] = true
	w.mu.Unlock()
	w.enqueueNode(node)
}

// keepNode stops deleting a node's objects (its speaker is back).
func (w *statusWriter) keepNode(node string) {
	w.mu.Lock()
	delete(w.gone, node)
	w.mu.Unlock()
}

func (w *statusWriter) enqueueNode(node string) {
	objs, err := w.informer.GetIndexer().ByIndex(nodeIndex, node)
	if err != nil {
		return
	}
	for _, o := range objs {
		if key, err := cache.MetaNamespaceKeyFunc(o); err == nil {
			w.queue.Add(key)
		}
	}
}

// equalStatus compares two statuses without the sticky fields.
func (w *statusWriter) equalStatus(a, b map[string]any) bool {
	if len(w.sticky) == 0 {
		return reflect.DeepEqual(a, b)
	}
	strip := func(m map[string]any) map[string]any {
		c := make(map[string]any, len(m))
		for k, v := range m {
			c[k] = v
		}
		for _, k := range w.sticky {
			delete(c, k)
		}
		return c
	}
	return reflect.DeepEqual(strip(a), strip(b))
}

// run writes until ctx ends.
func (w *statusWriter) run(ctx context.Context) {
	go func() {
		<-ctx.Done()
		w.queue.ShutDown()
	}()
	for {
		name, quit := w.queue.Get()
		if quit {
			return
		}
		err := w.sync(ctx, name)
		switch {
		case err == nil:
			w.queue.Forget(name)
		case ctx.Err() != nil:
		default:
			klog.V(2).InfoS("Writing status failed; retrying", "resource", w.res.Resource, "name", name, "err", err)
			w.queue.AddRateLimited(name)
		}
		w.queue.Done(name)
	}
}

// sync makes object name match its desired state.
func (w *statusWriter) sync(ctx context.Context, name string) error {
	w.mu.Lock()
	want := w.desired[name]
	pruning := w.pruning
	seen := w.seen[name]
	w.mu.Unlock()
	obj, exists, err := w.informer.GetStore().GetByKey(name)
	if err != nil {
		return err
	}
	var have *unstructured.Unstructured
	if exists {
		have = obj.(*unstructured.Unstructured)
	}
	have = w.fresher(name, have)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	switch {
	case want == nil && have == nil:
		w.mu.Lock()
		if w.seen[name] == seen {
			delete(w.seen, name) // nothing to write or remember: the count can start again
		}
		w.mu.Unlock()
		return nil
	case want == nil:
		n := objectNode(have)
		w.mu.Lock()
		gone := w.gone[n]
		w.mu.Unlock()
		if !(n == w.node && pruning) && !gone {
			return nil
		}
		uid := have.GetUID()
		err := w.client.Delete(ctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
		w.metrics.statusWrite(w.res.Resource, "delete", err)
		if err == nil {
			w.wrote(name, seen, have, nil)
		}
		if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
			return nil
		}
		return err
	case have == nil:
		u := &unstructured.Unstructured{Object: map[string]any{"status": want}}
		u.SetGroupVersionKind(w.kind)
		u.SetName(name)
		created, err := w.client.Create(ctx, u, metav1.CreateOptions{FieldManager: fieldManager})
		w.metrics.statusWrite(w.res.Resource, "create", err)
		if err == nil {
			w.wrote(name, seen, nil, created)
		}
		if apierrors.IsAlreadyExists(err) {
			return errors.New("exists but not seen yet") // retried once the informer has it
		}
		return err
	default:
		cur, _, _ := unstructured.NestedMap(have.Object, "status")
		if w.equalStatus(cur, want) {
			return nil
		}
		next := make(map[string]any, len(want))
		for k, v := range want {
			next[k] = v
		}
		for _, k := range w.sticky {
			if v, ok := cur[k]; ok {
				next[k] = v
			}
		}
		u := have.DeepCopy()
		u.Object["status"] = next
		updated, err := w.client.Update(ctx, u, metav1.UpdateOptions{FieldManager: fieldManager})
		w.metrics.statusWrite(w.res.Resource, "update", err)
		if err == nil {
			w.wrote(name, seen, have, updated)
		}
		return err
	}
}

// wrote remembers a successful write of name that replaced have (nil: there
// was none) with obj (nil: deleted), unless the informer showed an event for
// name since the sync read seen: then the cache is at least as new as the
// write, and it decides.
func (w *statusWriter) wrote(name string, seen uint64, have, obj *unstructured.Unstructured) {
	over := ""
	if have != nil {
		over = have.GetResourceVersion()
	}
	w.mu.Lock()
	if w.seen[name] == seen {
		w.written[name] = writtenObject{over: over, obj: obj}
	}
	w.mu.Unlock()
}

// fresher returns what this writer last wrote for name when the informer's
// object (have) is still the one that write replaced, else have.
func (w *statusWriter) fresher(name string, have *unstructured.Unstructured) *unstructured.Unstructured {
	w.mu.Lock()
	defer w.mu.Unlock()
	wr, ok := w.written[name]
	if !ok {
		return have
	}
	cached := ""
	if have != nil {
		cached = have.GetResourceVersion()
	}
	if (have == nil) != (wr.over == "") || cached != wr.over {
		delete(w.written, name)
		return have
	}
	return wr.obj
}

// deleteOwn deletes every object of this node, now (shutdown and --cleanup).
func (w *statusWriter) deleteOwn(ctx context.Context) error {
	return deleteNodeObjects(ctx, w.client, w.node)
}

// deleteNodeObjects deletes the status objects of node in client's resource.
func deleteNodeObjects(ctx context.Context, client dynamic.ResourceInterface, node string) error {
	list, err := client.List(ctx, metav1.ListOptions{FieldSelector: "status.node=" + node})
	if err != nil {
		return err
	}
	var errs []error
	for _, o := range list.Items {
		uid := o.GetUID()
		err := client.Delete(ctx, o.GetName(), metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// fieldManager is the speaker's server-side field manager name.
const fieldManager = "ironlb-speaker"

// objectName joins parts with dots into a valid object name (a DNS subdomain of
// at most 253 characters); longer names keep a readable head and end in a
// hash of the whole.
func objectName(parts ...string) string {
	name := strings.ToLower(strings.Join(parts, "."))
	if len(name) <= 253 {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	return strings.TrimRight(name[:253-17], ".-") + "." + hex.EncodeToString(sum[:8])
}

// announcementName is the name of a node's ServiceAnnouncement of one address.
func announcementName(mode v1alpha1.AnnouncementMode, ip string, node string) string {
	return objectName(strings.ToLower(string(mode)), ip, node)
}

// sessionName is the name of a node's BGPSession with one BGPPeer.
func sessionName(node, peer string) string {
	return objectName(node, peer)
}
