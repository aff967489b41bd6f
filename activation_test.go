package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"testing"

	"github.com/kelpie/cluster/internal/demohost"
	"github.com/kelpie/cluster/placement"
)

func newTestActors(t *testing.T) (*localActors, *demohost.Host) {
	h, err := demohost.New("n1", "")
	if err != nil {
		t.Fatal(err)
	}
	return newLocalActors(h, slog.New(slog.DiscardHandler)), h
}

func runIncr(t *testing.T, a *localActors, h *demohost.Host, p placement.Placement) int64 {
	t.Helper()
	var v int64
	err := a.run(context.Background(), p, func() error { return nil }, func() error {
		b, err := h.Invoke(context.Background(), p.Actor, p.Token, []byte(`{"op":"incr"}`))
		if err != nil {
			return err
		}
		var r demohost.Response
		json.Unmarshal(b, &r)
		v = r.Value
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestLeaseSafety_FenceKeepsStateForSamePlacement: a fenced actor resumes
// with its state under the same placement, hands that state to a migration,
// and never activates again under a token it handed off.
func TestLeaseSafety_FenceKeepsStateForSamePlacement(t *testing.T) {
	a, h := newTestActors(t)
	p := placement.Placement{Actor: "x", Node: "n1", Token: 10, State: placement.StateActive}
	runIncr(t, a, h, p)
	runIncr(t, a, h, p)
	if n := a.deactivateAll(context.Background(), "fenced"); n != 1 {
		t.Fatalf("deactivated %d", n)
	}
	if v := runIncr(t, a, h, p); v != 3 {
		t.Fatalf("after renewal the same placement resumed at %d, want 3", v)
	}
	// A different placement of the same actor never sees that state.
	a.deactivateAll(context.Background(), "fenced")
	if v := runIncr(t, a, h, placement.Placement{Actor: "x", Node: "n1", Token: 20, State: placement.StateActive}); v != 1 {
		t.Fatalf("a new placement started at %d, want fresh 1", v)
	}
	// Fenced, then migrated away: the handoff carries the fenced state and
	// the old token is refused from then on.
	a.deactivateAll(context.Background(), "fenced")
	state, err := a.handoff(context.Background(), "x", 20, 0, 21)
	if err != nil || string(state) != `{"value":1}` {
		t.Fatalf("handoff after fence: %q %v", state, err)
	}
	err = a.run(context.Background(), placement.Placement{Actor: "x", Node: "n1", Token: 20, State: placement.StateActive}, func() error { return nil }, func() error { return nil })
	if !errors.Is(err, ErrStaleToken) {
		t.Fatalf("old token after handoff: %v", err)
	}
	// The migration aborts: the placement produced by it gets the parked state.
	if v := runIncr(t, a, h, placement.Placement{Actor: "x", Node: "n1", Token: 22, State: placement.StateActive, Migration: 21}); v != 2 {
		t.Fatalf("after abort the source resumed at %d, want 2", v)
	}
}

// TestMigrationHandoff_NoStateFromAnotherLineage replays the
// MinorityPartition linearizability failure: this node was the source of a
// migration that committed (its final state stays parked here), the actor
// later came back here as a fresh placement that never activated, and a
// migration away from that placement must hand over a fresh actor, not the
// parked state of the old lineage.
func TestMigrationHandoff_NoStateFromAnotherLineage(t *testing.T) {
	a, h := newTestActors(t)
	old := placement.Placement{Actor: "x", Node: "n1", Token: 11, State: placement.StateActive}
	for range 5 {
		runIncr(t, a, h, old)
	}
	state, err := a.handoff(context.Background(), "x", 11, 0, 44) // migration 44 commits elsewhere
	if err != nil || string(state) != `{"value":5}` {
		t.Fatalf("first handoff: %q %v", state, err)
	}
	// Token 67: a fresh placement here, never activated; migration 68 moves it.
	state, err = a.handoff(context.Background(), "x", 67, 0, 68)
	if err != nil {
		t.Fatal(err)
	}
	if len(state) != 0 {
		t.Fatalf("handoff of a fresh, never activated placement sent %q: the state of another lineage", state)
	}
	// The placement an aborted migration puts back here does carry the
	// parked state into the next migration.
	state, err = a.handoff(context.Background(), "x", 70, 68, 71)
	if err != nil || len(state) != 0 {
		t.Fatalf("handoff after abort of 68: %q %v", state, err)
	}
	p := placement.Placement{Actor: "x", Node: "n1", Token: 80, State: placement.StateActive}
	runIncr(t, a, h, p)
	runIncr(t, a, h, p)
	if state, err = a.handoff(context.Background(), "x", 80, 0, 81); err != nil || string(state) != `{"value":2}` {
		t.Fatalf("handoff of token 80: %q %v", state, err)
	}
	// Migration 81 aborts (placement 85, Migration 81) and a new migration
	// starts from that placement before it ever activated.
	if state, err = a.handoff(context.Background(), "x", 85, 81, 86); err != nil || string(state) != `{"value":2}` {
		t.Fatalf("handoff after abort of 81: %q %v, want the parked state", state, err)
	}
}

// TestMigrationHandoff_FencedThenAbortedBeforeHandoff replays the
// MigrationStorm failure of seed 110: the source fenced itself (its lease
// ran out while it became leader), a migration away from it aborted before
// its handoff reached it, and the next migration of the placement that
// abort produced must carry the fenced state, as activating it would.
func TestMigrationHandoff_FencedThenAbortedBeforeHandoff(t *testing.T) {
	a, h := newTestActors(t)
	p := placement.Placement{Actor: "x", Node: "n1", Token: 16, State: placement.StateActive}
	for range 3 {
		runIncr(t, a, h, p)
	}
	a.deactivateAll(context.Background(), "fenced") // fenced under token 16
	// Migration 50 of token 16 aborted without a handoff: placement 55
	// (Migration 50) back here; migration 81 moves it before it activated.
	state, err := a.handoff(context.Background(), "x", 55, 50, 81)
	if err != nil || string(state) != `{"value":3}` {
		t.Fatalf("handoff of the aborted migration's placement: %q %v, want the fenced state", state, err)
	}
}

// TestForgetBefore: a node that rejoined as a new incarnation stops the old
// incarnation's activations and forgets their fenced states, and leaves the
// new incarnation's alone.
func TestForgetBefore(t *testing.T) {
	a, h := newTestActors(t)
	oldP := placement.Placement{Actor: "x", Node: "n1", Token: 10, State: placement.StateActive}
	runIncr(t, a, h, oldP)
	runIncr(t, a, h, oldP)
	a.deactivateAll(context.Background(), "fenced") // x fenced under token 10
	newP := placement.Placement{Actor: "y", Node: "n1", Token: 60, State: placement.StateActive}
	runIncr(t, a, h, newP)
	stale := placement.Placement{Actor: "z", Node: "n1", Token: 20, State: placement.StateActive}
	runIncr(t, a, h, stale)

	if n := a.forgetBefore(context.Background(), 50, "rejoined"); n != 1 {
		t.Fatalf("stopped %d activations, want 1 (z)", n)
	}
	if v := runIncr(t, a, h, newP); v != 2 {
		t.Fatalf("new incarnation's actor went on at %d, want 2", v)
	}
	err := a.run(context.Background(), stale, func() error { return nil }, func() error { return nil })
	if !errors.Is(err, ErrStaleToken) {
		t.Fatalf("old incarnation's token after rejoin: %v", err)
	}
	// An abort placement of the new incarnation must not pick up x's state
	// fenced under the old incarnation.
	if v := runIncr(t, a, h, placement.Placement{Actor: "x", Node: "n1", Token: 70, State: placement.StateActive, Migration: 65}); v != 1 {
		t.Fatalf("x resumed at %d after the rejoin, want a fresh 1", v)
	}
}

// A deposed leader's migration reaching a node late never replaces the state
// a newer migration parked or staged there.
func TestMigrationHandoff_LateOlderMigrationIsRefused(t *testing.T) {
	a, h := newTestActors(t)
	p := placement.Placement{Actor: "x", Node: "n1", Token: 10, State: placement.StateActive}
	runIncr(t, a, h, p)
	runIncr(t, a, h, p)
	// Target side: migration 30 staged here, then migration 20's transfer
	// (older, its leader deposed) arrives.
	if err := a.stage("y", 30, []byte(`{"value":7}`)); err != nil {
		t.Fatal(err)
	}
	if err := a.stage("y", 20, []byte(`{"value":3}`)); !errors.Is(err, ErrStaleToken) {
		t.Fatalf("late stage of an older migration: %v", err)
	}
	if v := runIncr(t, a, h, placement.Placement{Actor: "y", Node: "n1", Token: 31, State: placement.StateActive, Migration: 30}); v != 8 {
		t.Fatalf("y after migration 30 committed here: %d, want 8", v)
	}
	// Source side: migration 40 took x (token 10); a late handoff of the
	// same token for an older migration 35 is refused and leaves 40's
	// parked state alone.
	if state, err := a.handoff(context.Background(), "x", 10, 0, 40); err != nil || string(state) != `{"value":2}` {
		t.Fatalf("handoff 40: %q %v", state, err)
	}
	if _, err := a.handoff(context.Background(), "x", 10, 0, 35); !errors.Is(err, ErrStaleToken) {
		t.Fatalf("late handoff of an older migration: %v", err)
	}
	if v := runIncr(t, a, h, placement.Placement{Actor: "x", Node: "n1", Token: 41, State: placement.StateActive, Migration: 40}); v != 3 {
		t.Fatalf("x after migration 40 aborted: %d, want 3", v)
	}
}
