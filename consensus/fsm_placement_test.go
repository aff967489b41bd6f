package consensus

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/kelpie/cluster/placement"
)

// pfsm is an FSM plus a running Raft index, for placement tests.
type pfsm struct {
	t   *testing.T
	f   *FSM
	idx uint64
}

func newPFSM(t *testing.T, active ...string) *pfsm {
	p := &pfsm{t: t, f: NewFSM()}
	for _, id := range active {
		p.member(id, StatusJoining, StatusActive)
	}
	return p
}

func (p *pfsm) apply(b []byte) *ApplyResult {
	p.idx++
	return p.f.ApplyCommand(p.idx, b)
}

func (p *pfsm) member(id string, statuses ...Status) {
	p.t.Helper()
	var cs []Change
	for _, s := range statuses {
		cs = append(cs, Change{Member: Member{ID: id, Role: RoleClient, Status: s}})
	}
	b, err := EncodeViewChange(ViewChange{Changes: cs})
	if err != nil {
		p.t.Fatal(err)
	}
	if r := p.apply(b); r.Err != nil {
		p.t.Fatalf("member %s %v: %v", id, statuses, r.Err)
	}
}

func (p *pfsm) place(items ...PlaceItem) *ApplyResult {
	p.t.Helper()
	b, err := EncodePlace(PlaceBatch{Items: items})
	if err != nil {
		p.t.Fatal(err)
	}
	return p.apply(b)
}

func TestFSMPlace(t *testing.T) {
	p := newPFSM(t, "n1", "n2")
	p.member("n3", StatusJoining)
	epoch := p.f.View().Epoch

	r := p.place(PlaceItem{"a", "n1"}, PlaceItem{"b", "n2"}, PlaceItem{"c", "n3"}, PlaceItem{"d", "ghost"}, PlaceItem{"a", "n2"})
	if r.Err != nil || len(r.Place) != 5 {
		t.Fatalf("place: %+v", r)
	}
	token := r.Index
	for i, want := range []string{"n1", "n2"} {
		o := r.Place[i]
		if o.Err != nil || o.Existing || o.Placement.Node != want || o.Placement.Token != token || o.Placement.State != placement.StateActive || o.Placement.Incarnation != 1 {
			t.Errorf("item %d: %+v", i, o)
		}
	}
	for _, i := range []int{2, 3} { // Joining node and unknown node: PlacementConsistency
		if !errors.Is(r.Place[i].Err, ErrNodeNotActive) {
			t.Errorf("item %d: %+v, want ErrNodeNotActive", i, r.Place[i])
		}
	}
	if o := r.Place[4]; !o.Existing || o.Placement.Node != "n1" || o.Placement.Token != token {
		t.Errorf("second place of a in the same batch: %+v, want the existing placement", o)
	}
	if p.f.View().Epoch != epoch {
		t.Error("placements changed the view epoch")
	}

	// Idempotent across entries: same answer, same token.
	r2 := p.place(PlaceItem{"a", "n2"})
	if o := r2.Place[0]; !o.Existing || o.Placement.Token != token || o.Placement.Node != "n1" {
		t.Errorf("re-place: %+v", o)
	}
	if got, ok, applied := p.f.Placement("a"); !ok || got.Token != token || applied != p.idx {
		t.Errorf("Placement(a) = %+v %v %d", got, ok, applied)
	}
	if n := p.f.PlacementCount("n1"); n != 1 {
		t.Errorf("count n1 = %d", n)
	}
}

func TestFSMRelease(t *testing.T) {
	p := newPFSM(t, "n1")
	tok := p.place(PlaceItem{"a", "n1"}).Index
	b, _ := EncodeRelease(ReleaseBatch{Items: []ReleaseItem{{"a", tok + 1}, {"zz", 1}}})
	r := p.apply(b)
	for i, o := range r.Place {
		if !errors.Is(o.Err, ErrNotPlaced) {
			t.Errorf("item %d with wrong token/actor: %+v", i, o)
		}
	}
	if _, ok, _ := p.f.Placement("a"); !ok {
		t.Fatal("placement removed by a release with the wrong token")
	}
	b, _ = EncodeRelease(ReleaseBatch{Items: []ReleaseItem{{"a", tok}}})
	if r := p.apply(b); r.Place[0].Err != nil {
		t.Fatal(r.Place[0].Err)
	}
	if _, ok, _ := p.f.Placement("a"); ok {
		t.Fatal("placement still there after release")
	}
	// A new placement gets a larger token (Fencing tokens).
	if r := p.place(PlaceItem{"a", "n1"}); r.Place[0].Placement.Token <= tok {
		t.Errorf("new token %d not above %d", r.Place[0].Placement.Token, tok)
	}
}

// TestPlacementConsistency_FailedNodeReleased: committing a node Failed (or
// a rejoin as a new incarnation) releases its placements into orphans; the
// re-placement clears the orphan.
func TestPlacementConsistency_FailedNodeReleased(t *testing.T) {
	p := newPFSM(t, "n1", "n2")
	tok := p.place(PlaceItem{"a", "n1"}, PlaceItem{"b", "n2"}).Index
	watch := p.f.WatchPlacements()
	p.member("n1", StatusFailed)
	select {
	case <-watch:
	default:
		t.Error("releasing a failed node's placements did not wake placement watchers")
	}
	if _, ok, _ := p.f.Placement("a"); ok {
		t.Fatal("placement on a Failed node survived")
	}
	o, ok := p.f.Orphan("a")
	if !ok || o.Node != "n1" || o.Token != tok || o.Since != p.idx {
		t.Fatalf("orphan = %+v %v", o, ok)
	}
	if _, ok, _ := p.f.Placement("b"); !ok {
		t.Fatal("placement on a live node was released")
	}
	r := p.place(PlaceItem{"a", "n2"})
	if r.Place[0].Err != nil || r.Place[0].Placement.Token <= tok {
		t.Fatalf("re-place: %+v", r.Place[0])
	}
	if _, ok := p.f.Orphan("a"); ok {
		t.Error("orphan kept after re-placement")
	}

	// n2 restarts unnoticed: Failed, Left, Joining in one entry.
	p.member("n2", StatusFailed, StatusLeft, StatusJoining)
	if n := p.f.PlacementCount("n2"); n != 0 {
		t.Errorf("%d placements survived n2's new incarnation", n)
	}
	p.member("n2", StatusActive)
	r = p.place(PlaceItem{"b", "n2"})
	if o := r.Place[0]; o.Err != nil || o.Placement.Incarnation != 2 {
		t.Errorf("placement on the new incarnation: %+v", o)
	}
}

func TestFSMSnapshotKeepsPlacements(t *testing.T) {
	p := newPFSM(t, "n1", "n2", "n3")
	var items []PlaceItem
	for i := 0; i < 50; i++ {
		items = append(items, PlaceItem{Actor: "actor-" + string(rune('a'+i%26)) + string(rune('a'+i/26)), Node: []string{"n1", "n2", "n3"}[i%3]})
	}
	p.place(items...)
	p.member("n3", StatusFailed)

	snap, err := p.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	f2 := NewFSM()
	if err := f2.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	a, ai := p.f.Placements()
	b, bi := f2.Placements()
	if ai != bi || len(a) != len(b) {
		t.Fatalf("restored %d placements at %d, want %d at %d", len(b), bi, len(a), ai)
	}
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("placement %d: %+v != %+v", i, a[i], b[i])
		}
	}
	if !p.f.mu.tab.Equal(f2.mu.tab) {
		t.Fatal("tables (with orphans) differ after restore")
	}

	// A snapshot whose placement points at a Failed member is refused.
	bad := bytes.Replace(sink.Bytes(), []byte(`"node":"n1"`), []byte(`"node":"n3"`), 1)
	f3 := NewFSM()
	if err := f3.Restore(io.NopCloser(bytes.NewReader(bad))); !errors.Is(err, ErrInvalidSnapshot) {
		t.Fatalf("restore with a placement on a failed node: %v", err)
	}
}
