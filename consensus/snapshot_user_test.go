package consensus

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/kelpie/cluster/placement"
)

// userSnapshotState builds an FSM with members a, b, c Active and d Left,
// actors x on a, y on b, z on c, and z migrating from c to a.
func userSnapshotState(t *testing.T) *harness {
	t.Helper()
	h := newHarness(t)
	for _, id := range []string{"a", "b", "c"} {
		h.drive(id, StatusJoining, StatusActive)
	}
	h.drive("d", StatusJoining, StatusFailed, StatusLeft)
	cmd, err := EncodePlace(PlaceBatch{Items: []PlaceItem{{Actor: "x", Node: "a"}, {Actor: "y", Node: "b"}, {Actor: "z", Node: "c"}}})
	if err != nil {
		t.Fatal(err)
	}
	if res := h.applyBytes(cmd); res.Err != nil {
		t.Fatal(res.Err)
	}
	z, _, _ := h.f.Placement("z")
	cmd, err = Encode(CmdMigrationStart, MigrationStart{Actor: "z", To: "a", Token: z.Token, ProposedAtUnixNano: 1})
	if err != nil {
		t.Fatal(err)
	}
	if res := h.applyBytes(cmd); res.Err != nil {
		t.Fatal(res.Err)
	}
	return h
}

func TestRebaseSnapshot(t *testing.T) {
	h := userSnapshotState(t)
	doc, err := decodeSnapshot(bytes.NewReader(snapshotBytes(t, h.f)))
	if err != nil {
		t.Fatal(err)
	}
	src := h.f.View()
	srcX, _, _ := h.f.Placement("x")

	// The live cluster: a runs as another process (another boot and
	// incarnation), b has failed, c is unknown, d runs again.
	liveA := member("a", StatusActive)
	liveA.Boot, liveA.Incarnation, liveA.JoinedAt, liveA.HTTPAddr = "boot-live", 7, 900, "10.0.0.1:7500"
	live := View{Epoch: 40, Index: 990, Members: []Member{
		liveA,
		{ID: "b", Status: StatusFailed, Role: RoleClient, Incarnation: 3, Boot: "boot-b"},
		{ID: "d", Status: StatusActive, Role: RoleClient, Incarnation: 2, Boot: "boot-d"},
	}}
	const target = 5000
	rebound, aborted := rebaseSnapshot(&doc, live, target, 42)

	if !reflect.DeepEqual(rebound, []string{"a"}) {
		t.Errorf("rebound = %v, want [a]", rebound)
	}
	if !reflect.DeepEqual(aborted, []string{"z"}) {
		t.Errorf("aborted = %v, want [z]", aborted)
	}
	if doc.Epoch != live.Epoch+1 || doc.Index != target || doc.Applied != target {
		t.Errorf("epoch/index/applied = %d/%d/%d, want %d/%d/%d", doc.Epoch, doc.Index, doc.Applied, live.Epoch+1, target, target)
	}
	v := View{Members: doc.Members}
	a := mustMember(t, v, "a")
	if a.Boot != "boot-live" || a.Incarnation != 7 || a.JoinedAt != 900 || a.HTTPAddr != "10.0.0.1:7500" ||
		a.Status != StatusActive || a.UpdatedEpoch != doc.Epoch || a.UpdatedAt != target {
		t.Errorf("rebound a = %+v", a)
	}
	// Not rebound: b (failed live), c (not live), d (Left in the snapshot).
	for _, id := range []string{"b", "c", "d"} {
		if got, want := mustMember(t, v, id), mustMember(t, src, id); got != want {
			t.Errorf("%s changed: %+v, want %+v", id, got, want)
		}
	}
	for _, p := range doc.Table.All() {
		if p.Token != target || p.State != placement.StateActive {
			t.Errorf("placement %+v: want token %d, active", p, target)
		}
	}
	if x, _ := doc.Table.Get("x"); x.Incarnation != 7 || x.Node != "a" || x.Migration != srcX.Migration {
		t.Errorf("x on the rebound a = %+v, want incarnation 7", x)
	}
	if y, _ := doc.Table.Get("y"); y.Incarnation != mustMember(t, src, "b").Incarnation {
		t.Errorf("y = %+v, want b's snapshot incarnation", y)
	}
	z, _ := doc.Table.Get("z")
	if len(doc.Migrations) != 0 || len(doc.MigrationsHistory) != 1 {
		t.Fatalf("migrations %v history %v, want none running and one finished", doc.Migrations, doc.MigrationsHistory)
	}
	m := doc.MigrationsHistory[0]
	if z.Node != "c" || z.Migration != m.ID || m.State != MigrationAborted || m.NewToken != target || m.EndedAt != 42 {
		t.Errorf("z = %+v, migration %+v: want back on c, aborted at the restore", z, m)
	}
	out, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ValidateSnapshot(out); err != nil {
		t.Fatalf("rebased document does not restore: %v", err)
	}

	// A snapshot from the future keeps its (higher) epoch, plus one.
	doc2, _ := decodeSnapshot(bytes.NewReader(snapshotBytes(t, h.f)))
	rebaseSnapshot(&doc2, View{Epoch: 1}, target, 0)
	if doc2.Epoch != src.Epoch+1 {
		t.Errorf("epoch = %d, want %d", doc2.Epoch, src.Epoch+1)
	}
}

func TestRebaseSnapshotTrimsHistory(t *testing.T) {
	doc := snapshotDoc{Version: SnapshotVersion, Table: placement.NewTable(), Migrations: []Migration{}}
	for i := range migrationHistory {
		doc.MigrationsHistory = append(doc.MigrationsHistory, Migration{ID: uint64(i + 1), Actor: fmt.Sprint("h", i), State: MigrationCommitted})
	}
	doc.Migrations = []Migration{{ID: 9999, Actor: "r", State: MigrationRunning}}
	rebaseSnapshot(&doc, View{}, 10000, 0)
	if n := len(doc.MigrationsHistory); n != migrationHistory {
		t.Fatalf("history %d, want %d", n, migrationHistory)
	}
	if first, last := doc.MigrationsHistory[0], doc.MigrationsHistory[migrationHistory-1]; first.ID != 2 || last.ID != 9999 {
		t.Fatalf("history runs %d..%d, want the oldest dropped and the aborted one last", first.ID, last.ID)
	}
}

func TestValidateSnapshotRejects(t *testing.T) {
	good := snapshotBytes(t, userSnapshotState(t).f)
	for name, b := range map[string][]byte{
		"empty":     nil,
		"not json":  []byte("hello"),
		"truncated": good[:len(good)/2],
		"version":   bytes.Replace(good, []byte(`"version":1`), []byte(`"version":2`), 1),
		"trailing":  append(append([]byte{}, good...), []byte(" {}")...),
		"no table":  []byte(`{"version":1}`),
	} {
		if _, err := ValidateSnapshot(b); !errors.Is(err, ErrInvalidSnapshot) {
			t.Errorf("%s: err = %v, want ErrInvalidSnapshot", name, err)
		}
	}
	info, err := ValidateSnapshot(good)
	if err != nil || info.Members != 4 || info.InView != 3 || info.Placements != 3 || info.Migrations != 1 {
		t.Fatalf("info %+v err %v", info, err)
	}
}

// TestUserRestore restores a document through raft on a one-voter server:
// the state is the rebased document, later entries continue above it, and a
// corrupt document or a failing BeforeRestore changes nothing.
func TestUserRestore(t *testing.T) {
	s, fsm := startSingle(t, t.TempDir(), true)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	apply := func(vc ViewChange) *ApplyResult {
		t.Helper()
		cmd, err := EncodeViewChange(vc)
		if err != nil {
			t.Fatal(err)
		}
		res, err := s.Apply(ctx, cmd)
		if err != nil || res.Err != nil {
			t.Fatalf("apply: %v / %v", err, res)
		}
		return res
	}
	for _, st := range []Status{StatusJoining, StatusActive} {
		apply(viewChange("live", member("a", st)))
	}
	before := fsm.View()
	data := snapshotBytes(t, userSnapshotState(t).f)

	if _, err := s.UserRestore(ctx, []byte(`{"version":1}`), RestoreOptions{}); !errors.Is(err, ErrInvalidSnapshot) {
		t.Fatalf("corrupt: err = %v, want ErrInvalidSnapshot", err)
	}
	boom := errors.New("boom")
	if _, err := s.UserRestore(ctx, data, RestoreOptions{BeforeRestore: func(context.Context, []placement.Placement) error { return boom }}); !errors.Is(err, boom) {
		t.Fatalf("BeforeRestore error: err = %v", err)
	}
	if got := fsm.View(); !reflect.DeepEqual(got, before) {
		t.Fatalf("failed restores changed the view: %v, want %v", got, before)
	}

	var seen []placement.Placement
	rep, err := s.UserRestore(ctx, data, RestoreOptions{NowUnixNano: 7, BeforeRestore: func(_ context.Context, ps []placement.Placement) error {
		seen = ps
		return nil
	}})
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	v := fsm.View()
	if v.Epoch != rep.Restored.Epoch || v.Index != rep.Restored.Index || v.Epoch <= before.Epoch || v.Index <= before.Index {
		t.Fatalf("view after restore %d/%d, report %+v, before %d/%d", v.Epoch, v.Index, rep.Restored, before.Epoch, before.Index)
	}
	if st := s.raw().Stats()["last_snapshot_index"]; st != fmt.Sprint(v.Index) {
		t.Errorf("raft snapshot index %s, document index %d", st, v.Index)
	}
	if !reflect.DeepEqual(rep.Rebound, []string{"a"}) || len(seen) != 3 || rep.Source.Placements != 3 || rep.Restored.Migrations != 0 {
		t.Errorf("report %+v, BeforeRestore saw %v", rep, seen)
	}
	ps, applied := fsm.Placements()
	if len(ps) != 3 || applied < v.Index {
		t.Fatalf("placements %v at %d", ps, applied)
	}
	// Later entries continue above the restore.
	res := apply(viewChange("after", member("e", StatusJoining)))
	if res.Epoch != v.Epoch+1 || res.Index <= v.Index {
		t.Fatalf("entry after the restore: epoch %d index %d, restore %d/%d", res.Epoch, res.Index, v.Epoch, v.Index)
	}
}

// A migration records which migration produced the placement it moves
// (OldMigration): 0 for a fresh placement, the earlier migration's ID for
// one that a commit (or an abort) produced.
func TestMigrationRecordsOldMigration(t *testing.T) {
	h := userSnapshotState(t) // z migrating c → a, from a fresh placement
	running, _ := h.f.Migrations()
	if len(running) != 1 || running[0].OldMigration != 0 {
		t.Fatalf("running %+v, want one from a fresh placement (OldMigration 0)", running)
	}
	first := running[0]
	apply := func(typ CommandType, v any) *ApplyResult {
		t.Helper()
		cmd, err := Encode(typ, v)
		if err != nil {
			t.Fatal(err)
		}
		res := h.applyBytes(cmd)
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		return res
	}
	apply(CmdMigrationCommit, MigrationEnd{Actor: "z", ID: first.ID, Checksum: "00", ProposedAtUnixNano: 2})
	z, _, _ := h.f.Placement("z")
	res := apply(CmdMigrationStart, MigrationStart{Actor: "z", To: "b", Token: z.Token, ProposedAtUnixNano: 3})
	if res.Migration == nil || res.Migration.OldMigration != first.ID || res.Migration.OldToken != z.Token {
		t.Fatalf("second migration %+v, want OldMigration %d", res.Migration, first.ID)
	}
}
