package placement

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"pgregory.net/rapid"
)

func pl(actor, node string, token uint64) Placement {
	return Placement{Actor: actor, Node: node, Token: token, State: StateActive}
}

// checkInvariants verifies that the per-node index agrees with the
// placements and that no actor is both placed and orphaned.
func checkInvariants(t *testing.T, tb *Table) {
	t.Helper()
	perNode := map[string][]Placement{}
	for _, p := range tb.All() {
		perNode[p.Node] = append(perNode[p.Node], p)
		if _, ok := tb.GetOrphan(p.Actor); ok {
			t.Errorf("actor %q is both placed and orphaned", p.Actor)
		}
	}
	total := 0
	for node, want := range perNode {
		if got := tb.ByNode(node); !reflect.DeepEqual(got, want) {
			t.Errorf("ByNode(%q) = %v, want %v", node, got, want)
		}
		if got := tb.Count(node); got != len(want) {
			t.Errorf("Count(%q) = %d, want %d", node, got, len(want))
		}
		total += len(want)
	}
	if len(tb.byNode) != len(perNode) {
		t.Errorf("index holds %d nodes, placements use %d (empty sets left behind?)", len(tb.byNode), len(perNode))
	}
	for node, na := range tb.byNode {
		for i, a := range na.actors {
			if e := tb.placements[a]; e.node != node || int(e.pos) != i {
				t.Errorf("index of %q: slot %d holds %q, whose entry says node %q slot %d", node, i, a, e.node, e.pos)
			}
		}
	}
	if tb.Len() != total {
		t.Errorf("Len() = %d, want %d", tb.Len(), total)
	}
}

func TestTableOps(t *testing.T) {
	tests := []struct {
		name        string
		ops         func(tb *Table)
		want        []Placement
		counts      map[string]int
		wantOrphans []Orphan
	}{
		{
			name: "empty",
			ops:  func(*Table) {},
		},
		{
			name:   "put",
			ops:    func(tb *Table) { tb.Put(pl("b", "n1", 2)); tb.Put(pl("a", "n1", 1)); tb.Put(pl("c", "n2", 3)) },
			want:   []Placement{pl("a", "n1", 1), pl("b", "n1", 2), pl("c", "n2", 3)},
			counts: map[string]int{"n1": 2, "n2": 1, "n3": 0},
		},
		{
			name: "replace on the same node keeps the count",
			ops: func(tb *Table) {
				tb.Put(pl("a", "n1", 1))
				tb.Put(Placement{Actor: "a", Node: "n1", Token: 9, State: StateMigrating, Incarnation: 2})
			},
			want:   []Placement{{Actor: "a", Node: "n1", Token: 9, State: StateMigrating, Incarnation: 2}},
			counts: map[string]int{"n1": 1},
		},
		{
			name:   "replace on another node moves the count",
			ops:    func(tb *Table) { tb.Put(pl("a", "n1", 1)); tb.Put(pl("b", "n1", 2)); tb.Put(pl("a", "n2", 5)) },
			want:   []Placement{pl("a", "n2", 5), pl("b", "n1", 2)},
			counts: map[string]int{"n1": 1, "n2": 1},
		},
		{
			name: "delete",
			ops: func(tb *Table) {
				tb.Put(pl("a", "n1", 1))
				tb.Put(pl("b", "n1", 2))
				if p, ok := tb.Delete("a"); !ok || p != pl("a", "n1", 1) {
					panic(fmt.Sprintf("Delete(a) = %v, %v", p, ok))
				}
				if _, ok := tb.Delete("missing"); ok {
					panic("Delete(missing) reported ok")
				}
			},
			want:   []Placement{pl("b", "n1", 2)},
			counts: map[string]int{"n1": 1},
		},
		{
			name:   "delete the last actor of a node",
			ops:    func(tb *Table) { tb.Put(pl("a", "n1", 1)); tb.Delete("a") },
			counts: map[string]int{"n1": 0},
		},
		{
			name: "release node orphans its actors only",
			ops: func(tb *Table) {
				tb.Put(pl("a", "n1", 1))
				tb.Put(Placement{Actor: "b", Node: "n1", Token: 2, State: StateMigrating})
				tb.Put(pl("c", "n2", 3))
				got := tb.ReleaseNode("n1", 10)
				want := []Orphan{{Actor: "a", Node: "n1", Token: 1, Since: 10}, {Actor: "b", Node: "n1", Token: 2, Since: 10}}
				if !reflect.DeepEqual(got, want) {
					panic(fmt.Sprintf("ReleaseNode = %v, want %v", got, want))
				}
				if got := tb.ReleaseNode("n1", 11); got != nil {
					panic(fmt.Sprintf("second ReleaseNode = %v, want nil", got))
				}
			},
			want:        []Placement{pl("c", "n2", 3)},
			counts:      map[string]int{"n1": 0, "n2": 1},
			wantOrphans: []Orphan{{Actor: "a", Node: "n1", Token: 1, Since: 10}, {Actor: "b", Node: "n1", Token: 2, Since: 10}},
		},
		{
			name: "put clears the orphan record",
			ops: func(tb *Table) {
				tb.Put(pl("a", "n1", 1))
				tb.Put(pl("b", "n1", 2))
				tb.ReleaseNode("n1", 10)
				tb.Put(pl("a", "n2", 12))
			},
			want:        []Placement{pl("a", "n2", 12)},
			counts:      map[string]int{"n1": 0, "n2": 1},
			wantOrphans: []Orphan{{Actor: "b", Node: "n1", Token: 2, Since: 10}},
		},
		{
			name: "orphan removes the placement and replaces an earlier record",
			ops: func(tb *Table) {
				tb.Put(pl("a", "n1", 1))
				tb.Orphan(Orphan{Actor: "z", Node: "n9", Token: 1, Since: 2})
				tb.Orphan(Orphan{Actor: "a", Node: "n1", Token: 1, Since: 4})
				tb.Orphan(Orphan{Actor: "z", Node: "n9", Token: 3, Since: 5})
			},
			counts:      map[string]int{"n1": 0},
			wantOrphans: []Orphan{{Actor: "a", Node: "n1", Token: 1, Since: 4}, {Actor: "z", Node: "n9", Token: 3, Since: 5}},
		},
		{
			name: "clear orphan",
			ops: func(tb *Table) {
				tb.Orphan(Orphan{Actor: "a", Node: "n1", Token: 1, Since: 2})
				tb.Orphan(Orphan{Actor: "b", Node: "n1", Token: 1, Since: 2})
				tb.ClearOrphan("a")
				tb.ClearOrphan("missing")
			},
			wantOrphans: []Orphan{{Actor: "b", Node: "n1", Token: 1, Since: 2}},
		},
	}
	for _, tc := range tests {
		for _, zero := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/zero=%v", tc.name, zero), func(t *testing.T) {
				tb := NewTable()
				if zero {
					tb = &Table{}
				}
				tc.ops(tb)
				if got := tb.All(); !reflect.DeepEqual(got, tc.want) {
					t.Errorf("All() = %v, want %v", got, tc.want)
				}
				for _, p := range tc.want {
					if got, ok := tb.Get(p.Actor); !ok || got != p {
						t.Errorf("Get(%q) = %v, %v; want %v", p.Actor, got, ok, p)
					}
				}
				for node, n := range tc.counts {
					if got := tb.Count(node); got != n {
						t.Errorf("Count(%q) = %d, want %d", node, got, n)
					}
				}
				if got := tb.NumOrphans(); got != len(tc.wantOrphans) {
					t.Errorf("NumOrphans() = %d, want %d", got, len(tc.wantOrphans))
				}
				if got := tb.Orphans(); !reflect.DeepEqual(got, tc.wantOrphans) {
					t.Errorf("Orphans() = %v, want %v", got, tc.wantOrphans)
				}
				for _, o := range tc.wantOrphans {
					if got, ok := tb.GetOrphan(o.Actor); !ok || got != o {
						t.Errorf("GetOrphan(%q) = %v, %v; want %v", o.Actor, got, ok, o)
					}
				}
				checkInvariants(t, tb)
			})
		}
	}
}

func sampleTable() *Table {
	tb := NewTable()
	tb.Put(pl("a", "n1", 1))
	tb.Put(Placement{Actor: "b", Node: "n2", Token: 2, State: StateMigrating, Incarnation: 3})
	tb.Put(pl("c", "n1", 4))
	tb.Orphan(Orphan{Actor: "d", Node: "n3", Token: 5, Since: 6})
	return tb
}

// TestTableMatchesReference applies random operations to a Table and to a
// naive model (plain maps, every query a scan) and compares every query.
func TestTableMatchesReference(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		tb := NewTable()
		ref := map[string]Placement{}
		refOrphans := map[string]Orphan{}
		actor := rapid.SampledFrom([]string{"a", "b", "c", "d", "e", "f", "g", "h"})
		node := rapid.SampledFrom([]string{"n1", "n2", "n3"})
		for i := range rapid.IntRange(0, 60).Draw(rt, "ops") {
			idx := uint64(i + 1)
			switch op := rapid.IntRange(0, 5).Draw(rt, "op"); op {
			case 0, 1: // Put
				p := pl(actor.Draw(rt, "actor"), node.Draw(rt, "node"), idx)
				tb.Put(p)
				ref[p.Actor] = p
				delete(refOrphans, p.Actor)
			case 2: // Insert
				p := pl(actor.Draw(rt, "actor"), node.Draw(rt, "node"), idx)
				got, ok := tb.Insert(p)
				if old, placed := ref[p.Actor]; placed {
					if ok || got != old {
						rt.Fatalf("Insert(%v) = %v, %v; want %v, false", p, got, ok, old)
					}
				} else {
					if !ok || got != p {
						rt.Fatalf("Insert(%v) = %v, %v; want it placed", p, got, ok)
					}
					ref[p.Actor] = p
					delete(refOrphans, p.Actor)
				}
			case 3: // Delete
				a := actor.Draw(rt, "actor")
				got, ok := tb.Delete(a)
				want, placed := ref[a]
				if ok != placed || got != want {
					rt.Fatalf("Delete(%q) = %v, %v; want %v, %v", a, got, ok, want, placed)
				}
				delete(ref, a)
			case 4: // ReleaseNode
				n := node.Draw(rt, "node")
				var want []Orphan
				for a, p := range ref {
					if p.Node == n {
						o := Orphan{Actor: a, Node: n, Token: p.Token, Since: idx, Incarnation: p.Incarnation}
						want = append(want, o)
						refOrphans[a] = o
						delete(ref, a)
					}
				}
				sortOrphans(want)
				if got := tb.ReleaseNode(n, idx); !reflect.DeepEqual(got, want) {
					rt.Fatalf("ReleaseNode(%q) = %v, want %v", n, got, want)
				}
			case 5: // Orphan
				o := Orphan{Actor: actor.Draw(rt, "actor"), Node: node.Draw(rt, "node"), Token: idx, Since: idx}
				tb.Orphan(o)
				delete(ref, o.Actor)
				refOrphans[o.Actor] = o
			}
		}
		want := slices.SortedFunc(maps.Values(ref), func(a, b Placement) int { return strings.Compare(a.Actor, b.Actor) })
		if got := tb.All(); !reflect.DeepEqual(got, want) {
			rt.Fatalf("All() = %v, want %v", got, want)
		}
		wantOrphans := slices.SortedFunc(maps.Values(refOrphans), func(a, b Orphan) int { return strings.Compare(a.Actor, b.Actor) })
		if got := tb.Orphans(); !reflect.DeepEqual(got, wantOrphans) {
			rt.Fatalf("Orphans() = %v, want %v", got, wantOrphans)
		}
		for _, n := range []string{"n1", "n2", "n3"} {
			var byNode []Placement
			for _, p := range want {
				if p.Node == n {
					byNode = append(byNode, p)
				}
			}
			if got := tb.ByNode(n); !reflect.DeepEqual(got, byNode) {
				rt.Fatalf("ByNode(%q) = %v, want %v", n, got, byNode)
			}
			if got := tb.Count(n); got != len(byNode) {
				rt.Fatalf("Count(%q) = %d, want %d", n, got, len(byNode))
			}
		}
		c := tb.Clone()
		if !c.Equal(tb) {
			rt.Fatal("Clone differs")
		}
		checkInvariants(t, tb)
		checkInvariants(t, c)
	})
}

func TestTableCloneIsIndependent(t *testing.T) {
	orig := sampleTable()
	want := sampleTable()
	c := orig.Clone()
	if !c.Equal(orig) {
		t.Fatal("clone differs from the original")
	}
	c.Put(pl("a", "n9", 7))
	c.Put(pl("e", "n1", 8))
	c.ReleaseNode("n1", 9)
	c.ClearOrphan("d")
	if !orig.Equal(want) || orig.Count("n1") != 2 || orig.Count("n9") != 0 {
		t.Fatalf("mutating the clone changed the original: %v %v", orig.All(), orig.Orphans())
	}
	orig.Delete("b")
	if _, ok := c.Get("b"); !ok {
		t.Fatal("mutating the original changed the clone")
	}
	checkInvariants(t, orig)
	checkInvariants(t, c)
}

func TestTableEqual(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Table)
		equal  bool
	}{
		{name: "identical", mutate: func(*Table) {}, equal: true},
		{name: "built in another order", mutate: func(tb *Table) {
			tb.Delete("a")
			tb.Put(pl("a", "n1", 1))
		}, equal: true},
		{name: "different token", mutate: func(tb *Table) { tb.Put(pl("a", "n1", 2)) }},
		{name: "different node", mutate: func(tb *Table) { tb.Put(pl("a", "n2", 1)) }},
		{name: "different incarnation", mutate: func(tb *Table) {
			tb.Put(Placement{Actor: "a", Node: "n1", Token: 1, State: StateActive, Incarnation: 1})
		}},
		{name: "extra placement", mutate: func(tb *Table) { tb.Put(pl("z", "n1", 1)) }},
		{name: "missing orphan", mutate: func(tb *Table) { tb.ClearOrphan("d") }},
		{name: "different orphan", mutate: func(tb *Table) { tb.Orphan(Orphan{Actor: "d", Node: "n3", Token: 5, Since: 7}) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, b := sampleTable(), sampleTable()
			tc.mutate(b)
			if got := a.Equal(b); got != tc.equal {
				t.Errorf("a.Equal(b) = %v, want %v", got, tc.equal)
			}
			if got := b.Equal(a); got != tc.equal {
				t.Errorf("b.Equal(a) = %v, want %v", got, tc.equal)
			}
		})
	}
	var nilTable *Table
	if !nilTable.Equal(nil) || nilTable.Equal(NewTable()) || NewTable().Equal(nil) {
		t.Error("a nil table must equal only nil")
	}
	if !NewTable().Equal(&Table{}) {
		t.Error("NewTable() and the zero Table must be equal")
	}
}

func TestTableJSONGolden(t *testing.T) {
	const want = `{"placements":[{"actor":"a","node":"n1","token":1,"state":"active","incarnation":0},` +
		`{"actor":"b","node":"n2","token":2,"state":"migrating","incarnation":3},` +
		`{"actor":"c","node":"n1","token":4,"state":"active","incarnation":0}],` +
		`"orphans":[{"actor":"d","node":"n3","token":5,"since":6}]}`
	b, err := json.Marshal(sampleTable())
	if err != nil || string(b) != want {
		t.Fatalf("Marshal = %s, %v\nwant %s", b, err, want)
	}
	b, err = json.Marshal(NewTable())
	if err != nil || string(b) != `{"placements":[],"orphans":[]}` {
		t.Fatalf("Marshal(empty) = %s, %v", b, err)
	}
}

func TestTableJSONRoundTrip(t *testing.T) {
	// Insert the same entries in two different orders (and through a
	// replace) so map layout differs: the bytes must not.
	a := NewTable()
	b := NewTable()
	const n = 500
	for i := range n {
		a.Put(Placement{Actor: fmt.Sprintf("actor-%03d", i), Node: fmt.Sprintf("n%d", i%7), Token: uint64(i + 1), State: State(1 + i%2), Incarnation: uint64(i % 3)})
	}
	for i := n - 1; i >= 0; i-- {
		b.Put(pl(fmt.Sprintf("actor-%03d", i), "elsewhere", 99))
		b.Put(Placement{Actor: fmt.Sprintf("actor-%03d", i), Node: fmt.Sprintf("n%d", i%7), Token: uint64(i + 1), State: State(1 + i%2), Incarnation: uint64(i % 3)})
	}
	a.ReleaseNode("n3", 1000)
	b.ReleaseNode("n3", 1000)
	ja, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	jb, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ja, jb) {
		t.Fatal("equal tables encoded differently")
	}
	var c Table
	if err := json.Unmarshal(ja, &c); err != nil {
		t.Fatal(err)
	}
	if !c.Equal(a) {
		t.Fatal("round trip changed the table")
	}
	checkInvariants(t, &c)
	jc, _ := json.Marshal(&c)
	if !bytes.Equal(ja, jc) {
		t.Fatal("re-encoding a decoded table changed the bytes")
	}
}

func TestTableUnmarshalRejects(t *testing.T) {
	const p1 = `{"actor":"x","node":"n1","token":1,"state":"active","incarnation":0}`
	const o1 = `{"actor":"y","node":"n1","token":1,"since":2}`
	tests := []struct{ name, in string }{
		{"not JSON", `{`},
		{"wrong type", `[]`},
		{"trailing data", `{"placements":[],"orphans":[]} {}`},
		{"unknown top-level field", `{"placements":[],"orphans":[],"extra":1}`},
		{"unknown placement field", `{"placements":[{"actor":"x","node":"n1","token":1,"state":"active","owner":"n2"}]}`},
		{"unknown orphan field", `{"orphans":[{"actor":"y","node":"n1","token":1,"since":2,"x":0}]}`},
		{"duplicate actor", `{"placements":[` + p1 + `,{"actor":"x","node":"n2","token":2,"state":"active"}]}`},
		{"duplicate orphan", `{"orphans":[` + o1 + `,` + o1 + `]}`},
		{"placed and orphaned", `{"placements":[` + p1 + `],"orphans":[{"actor":"x","node":"n1","token":1,"since":2}]}`},
		{"token 0", `{"placements":[{"actor":"x","node":"n1","token":0,"state":"active"}]}`},
		{"missing token", `{"placements":[{"actor":"x","node":"n1","state":"active"}]}`},
		{"negative token", `{"placements":[{"actor":"x","node":"n1","token":-1,"state":"active"}]}`},
		{"bad state name", `{"placements":[{"actor":"x","node":"n1","token":1,"state":"dead"}]}`},
		{"numeric state", `{"placements":[{"actor":"x","node":"n1","token":1,"state":1}]}`},
		{"missing state", `{"placements":[{"actor":"x","node":"n1","token":1}]}`},
		{"empty actor", `{"placements":[{"actor":"","node":"n1","token":1,"state":"active"}]}`},
		{"empty node", `{"placements":[{"actor":"x","node":"","token":1,"state":"active"}]}`},
		{"orphan since 0", `{"orphans":[{"actor":"y","node":"n1","token":1,"since":0}]}`},
		{"orphan token 0", `{"orphans":[{"actor":"y","node":"n1","token":0,"since":2}]}`},
		{"orphan empty node", `{"orphans":[{"actor":"y","node":"","token":1,"since":2}]}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tb := sampleTable()
			err := tb.UnmarshalJSON([]byte(tc.in))
			if !errors.Is(err, ErrInvalidPlacement) {
				t.Fatalf("UnmarshalJSON(%s) = %v, want ErrInvalidPlacement", tc.in, err)
			}
			if !tb.Equal(sampleTable()) {
				t.Fatal("a rejected snapshot changed the table")
			}
			checkInvariants(t, tb)
		})
	}
}

func TestTableUnmarshalAccepts(t *testing.T) {
	tb := sampleTable()
	if err := tb.UnmarshalJSON([]byte(`null`)); err != nil || !tb.Equal(sampleTable()) {
		t.Fatalf("null must be a no-op: %v", err)
	}
	// Unsorted input, missing lists, and a replace of existing contents.
	in := `{"placements":[{"actor":"z","node":"n1","token":3,"state":"migrating"},{"actor":"m","node":"n1","token":2,"state":"active","incarnation":4}]}`
	if err := tb.UnmarshalJSON([]byte(in)); err != nil {
		t.Fatal(err)
	}
	want := NewTable()
	want.Put(Placement{Actor: "m", Node: "n1", Token: 2, State: StateActive, Incarnation: 4})
	want.Put(Placement{Actor: "z", Node: "n1", Token: 3, State: StateMigrating})
	if !tb.Equal(want) {
		t.Fatalf("got %v %v", tb.All(), tb.Orphans())
	}
	checkInvariants(t, tb)
}

func TestTableMarshalRefusesInvalid(t *testing.T) {
	for name, p := range map[string]Placement{
		"token 0":    {Actor: "a", Node: "n", State: StateActive},
		"state 0":    {Actor: "a", Node: "n", Token: 1},
		"empty node": {Actor: "a", Token: 1, State: StateActive},
		"not UTF-8":  {Actor: "\xff", Node: "n", Token: 1, State: StateActive},
	} {
		tb := NewTable()
		tb.Put(p)
		if _, err := json.Marshal(tb); !errors.Is(err, ErrInvalidPlacement) {
			t.Errorf("%s: Marshal error = %v, want ErrInvalidPlacement", name, err)
		}
	}
	tb := NewTable()
	tb.Orphan(Orphan{Actor: "a", Node: "n", Token: 1})
	if _, err := json.Marshal(tb); !errors.Is(err, ErrInvalidPlacement) {
		t.Errorf("orphan since 0: Marshal error = %v, want ErrInvalidPlacement", err)
	}
}

// FuzzTableUnmarshal: decoding never panics, a rejected input leaves the
// table unchanged, and anything accepted round-trips to an equal table and
// re-encodes to the same bytes.
func FuzzTableUnmarshal(f *testing.F) {
	good, _ := json.Marshal(sampleTable())
	f.Add(good)
	f.Add([]byte(`{"placements":[],"orphans":[]}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{"placements":[{"actor":"x","node":"n1","token":1,"state":"migrating","incarnation":18446744073709551615}]}`))
	f.Add([]byte(`{"placements":[{"actor":"x","node":"n1","token":1,"state":"active"},{"actor":"x","node":"n1","token":1,"state":"active"}]}`))
	f.Add([]byte(`{"orphans":[{"actor":"\u00e9","node":"n\ud800","token":1,"since":1}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		tb := sampleTable()
		if err := tb.UnmarshalJSON(data); err != nil {
			if !tb.Equal(sampleTable()) {
				t.Fatalf("rejected input %q changed the table", data)
			}
			return
		}
		checkInvariants(t, tb)
		enc, err := tb.MarshalJSON()
		if err != nil {
			t.Fatalf("accepted input %q does not re-encode: %v", data, err)
		}
		var again Table
		if err := again.UnmarshalJSON(enc); err != nil {
			t.Fatalf("re-encoding %s is rejected: %v", enc, err)
		}
		if !again.Equal(tb) {
			t.Fatalf("round trip of %q changed the table", data)
		}
		if enc2, _ := again.MarshalJSON(); !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding is not stable: %s vs %s", enc, enc2)
		}
	})
}

func benchTable(n int) (*Table, []string) {
	tb := NewTable()
	keys := make([]string, n)
	for i := range n {
		keys[i] = fmt.Sprintf("actor-%d", i)
		tb.Put(pl(keys[i], fmt.Sprintf("node-%d", i%100), uint64(i+1)))
	}
	return tb, keys
}

func BenchmarkTableGet(b *testing.B) {
	tb, keys := benchTable(100_000)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, ok := tb.Get(keys[i%len(keys)]); !ok {
			b.Fatal("missing")
		}
		i++
	}
}

// BenchmarkTablePut places new actors on 3 nodes, as a replica applying
// placements does (the table grows as it goes).
func BenchmarkTablePut(b *testing.B) {
	keys := make([]string, 1_000_000)
	for i := range keys {
		keys[i] = fmt.Sprintf("actor-%d", i)
	}
	nodes := []string{"n1", "n2", "n3"}
	tb := NewTable()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i == len(keys) {
			b.StopTimer()
			tb, i = NewTable(), 0
			b.StartTimer()
		}
		tb.Put(pl(keys[i], nodes[i%3], uint64(i+1)))
		i++
	}
}

// BenchmarkTableGetParallel reads under an RWMutex, as the FSM's readers do.
func BenchmarkTableGetParallel(b *testing.B) {
	tb, keys := benchTable(100_000)
	var mu sync.RWMutex
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			mu.RLock()
			_, ok := tb.Get(keys[i%len(keys)])
			mu.RUnlock()
			if !ok {
				b.Error("missing")
				return
			}
			i += 7
		}
	})
}
