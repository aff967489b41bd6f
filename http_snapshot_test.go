package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/kelpie/cluster/consensus"
)

// placedOn returns actor → node of every committed placement on n.
func placedOn(n *Node) map[string]string {
	ps, _ := n.fsm.Placements()
	out := map[string]string{}
	for _, p := range ps {
		out[p.Actor] = p.Node
	}
	return out
}

func saveSnapshot(t *testing.T, ctx context.Context, cl *Client) []byte {
	t.Helper()
	var buf bytes.Buffer
	d, err := cl.Snapshot(ctx, &buf, SnapshotOptions{})
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	if d.Bytes != int64(buf.Len()) || len(d.SHA256) != 64 || d.Index == 0 {
		t.Fatalf("download %+v for %d bytes", d, buf.Len())
	}
	return buf.Bytes()
}

func mustPlace(t *testing.T, ctx context.Context, cl *Client, actor, prefer string) {
	t.Helper()
	r, err := cl.Place(ctx, actor, PlaceOptions{Prefer: prefer})
	if err != nil || r.Placement.Node != prefer {
		t.Fatalf("place %s on %s: %+v %v", actor, prefer, r, err)
	}
	if _, err := cl.Invoke(ctx, actor, json.RawMessage(`{"op":"incr"}`)); err != nil {
		t.Fatalf("invoke %s: %v", actor, err)
	}
}

// TestSnapshotRestoreLive saves the state through a client (forwarded to the
// leader), changes it, and restores it: a corrupt document is a 400 that
// changes nothing; the restore brings back exactly the saved placements with
// tokens above every earlier one, deactivates every placed actor first (no
// actor is ever live twice, none runs under a replaced token) and moves the
// epoch forward.
func TestSnapshotRestoreLive(t *testing.T) {
	tc := newTestCluster(t)
	tc.startServers(3, nodeOpts{})
	c1 := tc.start("c1", nodeOpts{})
	tc.join(c1, tc.seed("s1"), 20*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl, err := NewClient(c1.HTTPAddr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	mustPlace(t, ctx, cl, "x", "s1")
	mustPlace(t, ctx, cl, "y", "s2")
	mustPlace(t, ctx, cl, "z", "c1")
	saved := saveSnapshot(t, ctx, cl)
	info, err := consensus.ValidateSnapshot(saved)
	if err != nil || info.Placements != 3 || info.InView != 4 {
		t.Fatalf("saved snapshot %+v: %v", info, err)
	}
	want := map[string]string{"x": "s1", "y": "s2", "z": "c1"}
	// Any server answers a stale read from its own replica.
	for _, id := range []string{"s1", "s2", "s3"} {
		sc, _ := NewClient(tc.node(id).HTTPAddr(), nil)
		var buf bytes.Buffer
		if _, err := sc.Snapshot(ctx, &buf, SnapshotOptions{Stale: true}); err != nil {
			t.Fatalf("stale snapshot from %s: %v", id, err)
		}
		if info, err := consensus.ValidateSnapshot(buf.Bytes()); err != nil || info.Members != 4 {
			t.Errorf("stale snapshot from %s: %+v %v", id, info, err)
		}
	}

	// A corrupt document is refused by any node and changes nothing.
	leader := tc.waitLeader()
	epoch := leader.fsm.View().Epoch
	for _, n := range []*Node{c1, tc.node("s2")} {
		req, _ := http.NewRequest(http.MethodPut, "http://"+n.HTTPAddr()+"/v1/snapshot", bytes.NewReader(saved[:len(saved)-10]))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var eb ErrorBody
		_ = json.NewDecoder(resp.Body).Decode(&eb)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || eb.Code != "invalid_argument" || eb.Error == "" {
			t.Errorf("corrupt snapshot via %s: %d %+v", n.ID(), resp.StatusCode, eb)
		}
	}
	if got := placedOn(leader); !reflect.DeepEqual(got, want) || leader.fsm.View().Epoch != epoch {
		t.Fatalf("corrupt restore changed the state: %v epoch %d (was %d)", got, leader.fsm.View().Epoch, epoch)
	}

	// Change the state: x moves, y goes, w arrives.
	if o, err := cl.Migrate(ctx, "x", "s3"); err != nil || o.State != consensus.MigrationCommitted {
		t.Fatalf("migrate x: %+v %v", o, err)
	}
	if err := cl.Release(ctx, "y"); err != nil {
		t.Fatal(err)
	}
	mustPlace(t, ctx, cl, "w", "s2")
	_, highest := leader.fsm.Placements()

	res, err := cl.RestoreSnapshot(ctx, bytes.NewReader(saved))
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	if !reflect.DeepEqual(res.Rebound, []string{"c1", "s1", "s2", "s3"}) || res.Restored.Placements != 3 ||
		res.Restored.Epoch <= epoch || res.Restored.Index <= highest {
		t.Fatalf("restore result %+v (epoch before %d, index before %d)", res, epoch, highest)
	}
	if !reflect.DeepEqual(res.Deactivated, []string{"w", "x", "z"}) || len(res.NotDeactivated) != 0 {
		t.Errorf("deactivated %v, not deactivated %v; want every actor placed before: [w x z]", res.Deactivated, res.NotDeactivated)
	}
	servers := []string{"s1", "s2", "s3"}
	waitFor(t, 10*time.Second, "every server holds the restored placements", func() bool {
		for _, id := range servers {
			if !reflect.DeepEqual(placedOn(tc.node(id)), want) || tc.node(id).View().Epoch < res.Restored.Epoch {
				return false
			}
		}
		return true
	})
	ps, _ := tc.node("s2").fsm.Placements()
	for _, p := range ps {
		if p.Token != res.Restored.Index {
			t.Errorf("placement %+v: token %d, want the restore's index %d", p, p.Token, res.Restored.Index)
		}
	}
	for actor, node := range want {
		r, err := cl.Invoke(ctx, actor, json.RawMessage(`{"op":"incr"}`))
		if err != nil || r.Node != node || r.Token != res.Restored.Index {
			t.Errorf("invoke %s after the restore: %+v %v, want it on %s", actor, r, err, node)
		}
	}
	if _, err := cl.Invoke(ctx, "w", json.RawMessage(`{"op":"get"}`)); err != nil {
		t.Errorf("w (not in the snapshot) cannot be placed again: %v", err)
	}
	tc.checkSingleActivation()
}

// TestSnapshotRestoreFreshCluster: a snapshot saved on one cluster and
// restored on a new cluster whose nodes reuse the IDs reproduces the view
// (members and statuses) and the placements, and they stay.
func TestSnapshotRestoreFreshCluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	old := newTestCluster(t)
	old.startServers(3, nodeOpts{})
	c1 := old.start("c1", nodeOpts{})
	old.join(c1, old.seed("s1"), 20*time.Second)
	cl, err := NewClient(old.node("s3").HTTPAddr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	mustPlace(t, ctx, cl, "a", "c1")
	mustPlace(t, ctx, cl, "b", "s2")
	saved := saveSnapshot(t, ctx, cl)
	oldView := old.waitLeader().fsm.View()
	for _, id := range []string{"c1", "s1", "s2", "s3"} {
		old.stop(id)
	}

	tc := newTestCluster(t)
	tc.startServers(3, nodeOpts{})
	n1 := tc.start("c1", nodeOpts{})
	tc.join(n1, tc.seed("s2"), 20*time.Second)
	ncl, err := NewClient(n1.HTTPAddr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := ncl.RestoreSnapshot(ctx, bytes.NewReader(saved))
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	statuses := func(v consensus.View) map[string]consensus.Status {
		out := map[string]consensus.Status{}
		for _, m := range v.Members {
			out[m.ID] = m.Status
		}
		return out
	}
	want := map[string]string{"a": "c1", "b": "s2"}
	check := func() bool {
		for _, n := range tc.live() {
			v := n.View()
			if !reflect.DeepEqual(statuses(v), statuses(oldView)) || v.Epoch < res.Restored.Epoch {
				return false
			}
			if n.fsm != nil && !reflect.DeepEqual(placedOn(n), want) {
				return false
			}
		}
		return true
	}
	waitFor(t, 10*time.Second, "the restored view and placements everywhere", check)
	incs := map[string]uint64{}
	for _, m := range tc.node("s1").View().Members {
		incs[m.ID] = m.Incarnation
	}
	// Reconcile rounds must not undo it (the members are bound to the live
	// processes).
	time.Sleep(4 * tc.node("s1").cfg.ReconcileInterval)
	if !check() {
		t.Fatalf("restored state did not stay: %v, placements %v", tc.node("s1").View(), placedOn(tc.node("s1")))
	}
	for _, m := range tc.node("s1").View().Members {
		if incs[m.ID] != m.Incarnation {
			t.Errorf("%s re-incarnated after the restore: %d → %d", m.ID, incs[m.ID], m.Incarnation)
		}
	}
	for actor, node := range want {
		if r, err := ncl.Invoke(ctx, actor, json.RawMessage(`{"op":"incr"}`)); err != nil || r.Node != node {
			t.Errorf("invoke %s: %+v %v, want on %s", actor, r, err, node)
		}
	}
	if got := res.Rebound; !slices.Equal(got, []string{"c1", "s1", "s2", "s3"}) {
		t.Errorf("rebound %v", got)
	}
}
