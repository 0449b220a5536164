package speaker

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic/dynamicinformer"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"

	"github.com/ironlb/ironlb/api/v1alpha1"
)

func announcementObject(t *testing.T, name string, st v1alpha1.ServiceAnnouncementStatus) *unstructured.Unstructured {
	t.Helper()
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&st)
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{Object: map[string]any{"status": m}}
	u.SetGroupVersionKind(v1alpha1.ServiceAnnouncementKind)
	u.SetName(name)
	u.SetUID(types.UID("uid-" + name))
	return u
}

// The writer keeps this node's objects equal to the desired set with the least
// writes: nothing for an unchanged or already-present object, one create,
// update or delete per change, a sticky "since", stale objects of this node
// removed once pruning starts, and a dead node's objects removed when asked.
func TestStatusWriterWritesOnlyChanges(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	since := metav1.NewTime(time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC))
	st := func(ip, node string, ifs ...string) v1alpha1.ServiceAnnouncementStatus {
		return v1alpha1.ServiceAnnouncementStatus{Address: ip, Mode: v1alpha1.AnnouncementL2, Node: node, Pool: "lan",
			Services: []string{"ns/svc"}, Interfaces: ifs, Since: since}
	}
	res := v1alpha1.ServiceAnnouncementsResource
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{res: "ServiceAnnouncementList"},
		announcementObject(t, "l2.192-0-2-7.node1", st("192.0.2.7", "node1", "lan0")),
		announcementObject(t, "l2.192-0-2-8.node2", st("192.0.2.8", "node2", "lan0")),
		announcementObject(t, "l2.192-0-2-9.node1", st("192.0.2.9", "node1", "lan0")),
	)
	f := dynamicinformer.NewDynamicSharedInformerFactory(dyn, 0)
	inf := f.ForResource(res).Informer()
	m, _ := newMetrics(nil)
	w, err := newStatusWriter("node1", res, v1alpha1.ServiceAnnouncementKind, dyn, inf, m, "since")
	if err != nil {
		t.Fatal(err)
	}
	f.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		t.Fatal("no sync")
	}
	go w.run(ctx)

	writes := func() []string {
		var out []string
		for _, a := range dyn.Actions() {
			switch a.GetVerb() {
			case "create", "update", "delete":
				name := ""
				switch x := a.(type) {
				case k8stesting.CreateAction:
					name = x.GetObject().(*unstructured.Unstructured).GetName()
				case k8stesting.UpdateAction:
					name = x.GetObject().(*unstructured.Unstructured).GetName()
				case k8stesting.DeleteAction:
					name = x.GetName()
				}
				out = append(out, a.GetVerb()+" "+name)
			}
		}
		return out
	}
	waitWrites := func(want ...string) {
		t.Helper()
		err := wait.PollUntilContextTimeout(ctx, 5*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) {
			return slices.Equal(writes(), want), nil
		})
		if err != nil {
			t.Fatalf("writes %v, want %v", writes(), want)
		}
	}
	get := func(name string) map[string]any {
		u, err := dyn.Resource(res).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil
		}
		s, _, _ := unstructured.NestedMap(u.Object, "status")
		return s
	}

	// Present and equal (apart from since): no write.
	s7 := st("192.0.2.7", "node1", "lan0")
	s7.Since = metav1.Now()
	w.set("l2.192-0-2-7.node1", &s7)
	// New: one create.
	s200 := st("192.0.2.200", "node1", "lan0")
	w.set("l2.192-0-2-200.node1", &s200)
	waitWrites("create l2.192-0-2-200.node1")
	// Same again with another since: nothing.
	s200b := s200
	s200b.Since = metav1.Now()
	w.set("l2.192-0-2-200.node1", &s200b)
	// Changed: one update, since kept.
	s200c := st("192.0.2.200", "node1", "lan1")
	s200c.Since = metav1.NewTime(since.Add(time.Hour))
	w.set("l2.192-0-2-200.node1", &s200c)
	waitWrites("create l2.192-0-2-200.node1", "update l2.192-0-2-200.node1")
	if got := get("l2.192-0-2-200.node1"); got["since"] != "2024-01-02T03:04:05Z" || got["interfaces"].([]any)[0] != "lan1" {
		t.Errorf("after the update: %v", got)
	}
	// Pruning deletes this node's undesired object, not another node's.
	w.prune()
	waitWrites("create l2.192-0-2-200.node1", "update l2.192-0-2-200.node1", "delete l2.192-0-2-9.node1")
	// A node declared gone loses its objects.
	w.forgetNode("node2")
	waitWrites("create l2.192-0-2-200.node1", "update l2.192-0-2-200.node1", "delete l2.192-0-2-9.node1", "delete l2.192-0-2-8.node2")
	// Not desired any more: deleted.
	w.set("l2.192-0-2-200.node1", nil)
	waitWrites("create l2.192-0-2-200.node1", "update l2.192-0-2-200.node1", "delete l2.192-0-2-9.node1", "delete l2.192-0-2-8.node2", "delete l2.192-0-2-200.node1")
	if get("l2.192-0-2-7.node1") == nil {
		t.Error("the desired, untouched object is gone")
	}
	// Someone deletes this node's object: it is recreated.
	if err := dyn.Resource(res).Delete(ctx, "l2.192-0-2-7.node1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	err = wait.PollUntilContextTimeout(ctx, 5*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) {
		return get("l2.192-0-2-7.node1") != nil, nil
	})
	if err != nil {
		t.Fatal("an object deleted behind the writer's back was not recreated")
	}
}

// A name synced again before the informer shows the writer's own last write
// (prune and forgetNode enqueue names from the cache) is compared with what was
// written, not with the stale cache: no second create, update or delete. The
// informer is stopped after its first sync, so it never catches up here.
func TestStatusWriterDoesNotRepeatWritesTheCacheHasNotShown(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := func(ip string, ifs ...string) *v1alpha1.ServiceAnnouncementStatus {
		return &v1alpha1.ServiceAnnouncementStatus{Address: ip, Mode: v1alpha1.AnnouncementL2, Node: "node1", Pool: "lan",
			Services: []string{"ns/svc"}, Interfaces: ifs}
	}
	res := v1alpha1.ServiceAnnouncementsResource
	dyn, f, inf, w := emptyAnnouncementWriter(t)
	stopInformer := make(chan struct{})
	f.Start(stopInformer)
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		t.Fatal("no sync")
	}
	close(stopInformer)
	f.Shutdown()
	go w.run(ctx)

	count := func() []string {
		var out []string
		for _, a := range dyn.Actions() {
			if v := a.GetVerb(); v == "create" || v == "update" || v == "delete" {
				out = append(out, v)
			}
		}
		return out
	}
	// marker makes a write of another name and waits for it: the queue is
	// FIFO with one worker, so everything enqueued before has been synced.
	n := 0
	marker := func() {
		t.Helper()
		n++
		name := "l2.198-51-100-" + string(rune('0'+n)) + ".node1"
		w.set(name, st("198.51.100.1", "lan0"))
		if err := wait.PollUntilContextTimeout(ctx, 5*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) {
			for _, a := range dyn.Actions() {
				if c, ok := a.(k8stesting.CreateAction); ok && c.GetObject().(*unstructured.Unstructured).GetName() == name {
					return true, nil
				}
			}
			return false, nil
		}); err != nil {
			t.Fatalf("the marker write of %s never happened: %v", name, count())
		}
	}
	resync := func(verb string) {
		t.Helper()
		before := len(count())
		w.queue.Add("l2.192-0-2-200.node1")
		marker()
		got := count()[before:]
		if !slices.Equal(got, []string{"create"}) {
			t.Fatalf("after the %s, syncing the name again wrote %v; want only the marker's create", verb, got)
		}
	}
	w.set("l2.192-0-2-200.node1", st("192.0.2.200", "lan0"))
	marker()
	resync("create")
	w.set("l2.192-0-2-200.node1", st("192.0.2.200", "lan1"))
	marker()
	resync("update")
	w.prune()
	w.set("l2.192-0-2-200.node1", nil)
	marker()
	resync("delete")
	if _, err := dyn.Resource(res).Get(ctx, "l2.192-0-2-200.node1", metav1.GetOptions{}); err == nil {
		t.Error("the deleted object exists")
	}
}

// emptyAnnouncementWriter is node1's ServiceAnnouncement writer over an empty
// fake API; the caller starts the informer factory and the writer.
func emptyAnnouncementWriter(t *testing.T) (*dynamicfake.FakeDynamicClient, dynamicinformer.DynamicSharedInformerFactory, cache.SharedIndexInformer, *statusWriter) {
	t.Helper()
	res := v1alpha1.ServiceAnnouncementsResource
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{res: "ServiceAnnouncementList"})
	f := dynamicinformer.NewDynamicSharedInformerFactory(dyn, 0)
	inf := f.ForResource(res).Informer()
	m, _ := newMetrics(nil)
	w, err := newStatusWriter("node1", res, v1alpha1.ServiceAnnouncementKind, dyn, inf, m)
	if err != nil {
		t.Fatal(err)
	}
	return dyn, f, inf, w
}

// Another speaker deletes this node's object (a partition: each side forgets
// the other's objects) right after this writer created it, and the informer
// shows the create and the delete before the create's answer comes back. The
// writer must not take the late answer for the newest state: the object is
// desired, so it is created again. (Before, the answer was remembered as
// written, no later event came for the name, and the object stayed missing:
// once in 43 partition trials of the L2 bench.)
func TestStatusWriterRecreatesWhatWasDeletedBeforeTheCreateReturned(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	res := v1alpha1.ServiceAnnouncementsResource
	dyn, f, inf, w := emptyAnnouncementWriter(t)
	const name = "l2.192-0-2-203.node1"
	cached := func() bool { _, ok, _ := inf.GetStore().GetByKey(name); return ok }
	until := func(what string, cond func() bool) error {
		if err := wait.PollUntilContextTimeout(ctx, time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) { return cond(), nil }); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	}
	var raced atomic.Bool
	dyn.PrependReactor("create", "serviceannouncements", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if !raced.CompareAndSwap(false, true) {
			return false, nil, nil // later creates: the tracker's own
		}
		obj := a.(k8stesting.CreateAction).GetObject().(*unstructured.Unstructured)
		if err := dyn.Tracker().Create(res, obj, ""); err != nil {
			return true, nil, err
		}
		if err := until("the create seen", cached); err != nil {
			return true, nil, err
		}
		if err := dyn.Tracker().Delete(res, "", name); err != nil {
			return true, nil, err
		}
		if err := until("the delete seen", func() bool { return !cached() }); err != nil {
			return true, nil, err
		}
		return true, obj, nil // the answer arrives last
	})
	f.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		t.Fatal("no sync")
	}
	go w.run(ctx)
	w.set(name, &v1alpha1.ServiceAnnouncementStatus{Address: "192.0.2.203", Mode: v1alpha1.AnnouncementL2,
		Node: "node1", Pool: "lan", Interfaces: []string{"lan0"}})
	if err := until("created again", func() bool {
		_, err := dyn.Resource(res).Get(ctx, name, metav1.GetOptions{})
		return raced.Load() && err == nil
	}); err != nil {
		t.Fatalf("the object deleted right after its create was not created again (raced %v)", raced.Load())
	}
}
