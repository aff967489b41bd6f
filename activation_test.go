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
	state, err := a.handoff(context.Background(), "x", 20, 21)
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
