package cluster

import (
	"fmt"
	"reflect"
	"testing"

	"pgregory.net/rapid"

	"github.com/kelpie/cluster/consensus"
)

// genView draws a view whose members are a random subset of m00..m19 with
// random statuses and incarnations, sorted by ID as views are.
func genView(t *rapid.T, label string, index uint64) consensus.View {
	v := consensus.View{Epoch: index, Index: index, Members: []consensus.Member{}}
	for i := 0; i < 20; i++ {
		if !rapid.Bool().Draw(t, fmt.Sprintf("%s-has-%d", label, i)) {
			continue
		}
		v.Members = append(v.Members, consensus.Member{
			ID:          fmt.Sprintf("m%02d", i),
			Role:        consensus.RoleClient,
			Status:      consensus.Status(rapid.IntRange(1, 5).Draw(t, fmt.Sprintf("%s-status-%d", label, i))),
			Incarnation: rapid.Uint64Range(1, 3).Draw(t, fmt.Sprintf("%s-inc-%d", label, i)),
		})
	}
	return v
}

// Applying the delta between two views to the older one gives exactly the
// newer one, whatever was added, changed or removed; a view at another
// index refuses it. (Two views at one index are equal: the FSM is
// deterministic.)
func TestViewDeltaRoundTrip(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		old := genView(t, "old", 10)
		cur := genView(t, "cur", 12)
		d := diffViews(old, cur)
		got, ok := applyDelta(old, d)
		if !ok {
			t.Fatalf("delta %+v does not apply to its own base", d)
		}
		if !reflect.DeepEqual(got, cur) {
			t.Fatalf("old %v + delta %+v = %v, want %v", old.Members, d, got.Members, cur.Members)
		}
		old.Index = 9
		if _, ok := applyDelta(old, d); ok {
			t.Fatalf("delta from index 10 applied to a view at index 9")
		}
	})
}

func TestViewDeltaCarriesOnlyChanges(t *testing.T) {
	m := func(id string, s consensus.Status) consensus.Member {
		return consensus.Member{ID: id, Role: consensus.RoleClient, Status: s}
	}
	old := consensus.View{Epoch: 3, Index: 30, Members: []consensus.Member{
		m("a", consensus.StatusActive), m("b", consensus.StatusActive), m("c", consensus.StatusJoining)}}
	cur := consensus.View{Epoch: 4, Index: 31, Members: []consensus.Member{
		m("a", consensus.StatusActive), m("c", consensus.StatusActive), m("d", consensus.StatusActive)}}
	d := diffViews(old, cur)
	want := viewDelta{Epoch: 4, Index: 31, Base: 30, Count: 3,
		Members: []consensus.Member{m("c", consensus.StatusActive), m("d", consensus.StatusActive)}, Removed: []string{"b"}}
	if !reflect.DeepEqual(d, want) {
		t.Fatalf("diff = %+v, want %+v", d, want)
	}
}

// A server's box answers a delta from any view it published within its
// history, and the delta applied to that view gives the latest one; bases
// it never published or has forgotten get the whole view instead.
func TestViewBoxDeltasFromHistory(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		b := newViewBoxWithHistory(3)
		var views []consensus.View
		n := rapid.IntRange(1, 6).Draw(t, "views")
		for i := 0; i < n; i++ {
			v := genView(t, fmt.Sprintf("v%d", i), uint64(10+2*i))
			views = append(views, v)
			b.offer(v)
		}
		cur, _, _ := b.get()
		for i, base := range views {
			d, ok := b.deltaSince(base.Index, cur)
			remembered := i >= len(views)-4 // the current view and the 3 changes before it
			if ok != remembered {
				t.Fatalf("delta from view %d of %d: ok %v, want %v", i, len(views), ok, remembered)
			}
			if !ok {
				continue
			}
			got, fits := applyDelta(base, d)
			if !fits || !reflect.DeepEqual(got, cur) {
				t.Fatalf("view %d + delta %+v = %v (fits %v), want %v", i, d, got.Members, fits, cur.Members)
			}
		}
		if _, ok := b.deltaSince(11, cur); ok && cur.Index != 11 {
			t.Fatalf("delta from index 11, which was never published")
		}
	})
}
