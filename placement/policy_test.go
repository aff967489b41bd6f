package placement

import (
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"sort"
	"testing"

	"pgregory.net/rapid"
)

func loads(m map[string]int) func(string) int { return func(id string) int { return m[id] } }

func TestChoose(t *testing.T) {
	ssd := map[string]string{"disk": "ssd"}
	ssdGPU := map[string]string{"disk": "ssd", "gpu": "yes"}
	tests := []struct {
		name    string
		req     Request
		nodes   []NodeInfo
		load    map[string]int
		want    string
		wantErr error
	}{
		{name: "least loaded", nodes: []NodeInfo{{ID: "n1", Active: true}, {ID: "n2", Active: true}, {ID: "n3", Active: true}},
			load: map[string]int{"n1": 3, "n2": 1, "n3": 2}, want: "n2"},
		{name: "prefer honoured even when more loaded", req: Request{Prefer: "n1"},
			nodes: []NodeInfo{{ID: "n1", Active: true}, {ID: "n2", Active: true}},
			load:  map[string]int{"n1": 9, "n2": 0}, want: "n1"},
		{name: "prefer honoured when it matches zone and labels", req: Request{Prefer: "n2", Zone: "a", Labels: ssd},
			nodes: []NodeInfo{{ID: "n1", Zone: "a", Labels: ssdGPU, Active: true}, {ID: "n2", Zone: "a", Labels: ssd, Active: true, Capacity: 10}},
			load:  map[string]int{"n1": 0, "n2": 9}, want: "n2"},
		{name: "prefer ignored when full", req: Request{Prefer: "n1"},
			nodes: []NodeInfo{{ID: "n1", Active: true, Capacity: 3}, {ID: "n2", Active: true}},
			load:  map[string]int{"n1": 3, "n2": 7}, want: "n2"},
		{name: "prefer ignored when inactive", req: Request{Prefer: "n1"},
			nodes: []NodeInfo{{ID: "n1"}, {ID: "n2", Active: true}},
			load:  map[string]int{"n2": 7}, want: "n2"},
		{name: "prefer ignored on zone mismatch", req: Request{Prefer: "n1", Zone: "b"},
			nodes: []NodeInfo{{ID: "n1", Zone: "a", Active: true}, {ID: "n2", Zone: "b", Active: true}},
			load:  map[string]int{"n2": 7}, want: "n2"},
		{name: "prefer ignored on label mismatch", req: Request{Prefer: "n1", Labels: ssd},
			nodes: []NodeInfo{{ID: "n1", Labels: map[string]string{"disk": "hdd"}, Active: true}, {ID: "n2", Labels: ssd, Active: true}},
			load:  map[string]int{"n2": 7}, want: "n2"},
		{name: "unknown preferred node ignored", req: Request{Prefer: "n9"},
			nodes: []NodeInfo{{ID: "n1", Active: true}, {ID: "n2", Active: true}},
			load:  map[string]int{"n1": 2, "n2": 1}, want: "n2"},
		{name: "zone filter", req: Request{Zone: "b"},
			nodes: []NodeInfo{{ID: "n1", Zone: "a", Active: true}, {ID: "n2", Zone: "b", Active: true}, {ID: "n3", Zone: "b", Active: true}},
			load:  map[string]int{"n1": 0, "n2": 5, "n3": 4}, want: "n3"},
		{name: "all labels must match", req: Request{Labels: ssdGPU},
			nodes: []NodeInfo{{ID: "n1", Labels: ssd, Active: true}, {ID: "n2", Labels: map[string]string{"disk": "ssd", "gpu": "yes", "extra": "1"}, Active: true}},
			load:  map[string]int{"n2": 5}, want: "n2"},
		{name: "empty label value must be present", req: Request{Labels: map[string]string{"gpu": ""}},
			nodes: []NodeInfo{{ID: "n1", Active: true}, {ID: "n2", Labels: map[string]string{"gpu": ""}, Active: true}},
			load:  map[string]int{"n2": 5}, want: "n2"},
		{name: "full least-loaded node skipped", nodes: []NodeInfo{{ID: "n1", Active: true, Capacity: 2}, {ID: "n2", Active: true, Capacity: 10}},
			load: map[string]int{"n1": 2, "n2": 9}, want: "n2"},
		{name: "capacity 0 is unlimited", nodes: []NodeInfo{{ID: "n1", Active: true, Capacity: 1}, {ID: "n2", Active: true}},
			load: map[string]int{"n1": 1, "n2": 1_000_000}, want: "n2"},
		{name: "over-full node skipped", nodes: []NodeInfo{{ID: "n1", Active: true, Capacity: 2}, {ID: "n2", Active: true}},
			load: map[string]int{"n1": 5, "n2": 9}, want: "n2"},
		{name: "inactive node never chosen even if idle", nodes: []NodeInfo{{ID: "n1"}, {ID: "n2", Active: true}},
			load: map[string]int{"n1": 0, "n2": 50}, want: "n2"},
		{name: "node without id never chosen", nodes: []NodeInfo{{ID: "", Active: true}, {ID: "n2", Active: true}},
			load: map[string]int{"n2": 50}, want: "n2"},
		{name: "matching nodes all full", req: Request{Zone: "a"},
			nodes: []NodeInfo{{ID: "n1", Zone: "a", Active: true, Capacity: 1}, {ID: "n2", Zone: "b", Active: true}},
			load:  map[string]int{"n1": 1}, wantErr: ErrNoCapacity},
		{name: "negative capacity means full", nodes: []NodeInfo{{ID: "n1", Active: true, Capacity: -1}},
			wantErr: ErrNoCapacity},
		{name: "only inactive nodes have room", nodes: []NodeInfo{{ID: "n1", Active: true, Capacity: 1}, {ID: "n2"}},
			load: map[string]int{"n1": 1}, wantErr: ErrNoCapacity},
		{name: "no node matches the constraints", req: Request{Zone: "c", Prefer: "n1"},
			nodes: []NodeInfo{{ID: "n1", Zone: "a", Active: true}, {ID: "n2", Zone: "b", Active: true}}, wantErr: ErrNoEligibleNode},
		{name: "all inactive", nodes: []NodeInfo{{ID: "n1"}, {ID: "n2"}}, wantErr: ErrNoEligibleNode},
		{name: "no nodes", wantErr: ErrNoEligibleNode},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.req.Actor = "actor-1"
			got, err := Choose(tc.req, tc.nodes, loads(tc.load))
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || got != "" {
					t.Fatalf("Choose = %q, %v; want error %v", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("Choose = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestChooseNilLoadMeansIdle(t *testing.T) {
	nodes := []NodeInfo{{ID: "n1", Active: true, Capacity: 1}}
	if got, err := Choose(Request{Actor: "a"}, nodes, nil); err != nil || got != "n1" {
		t.Fatalf("Choose = %q, %v; want n1", got, err)
	}
}

// TestChooseTieBreak: among equally loaded nodes the highest rendezvous
// score wins whatever the order of the node list, and ties spread actors
// evenly.
func TestChooseTieBreak(t *testing.T) {
	nodes := []NodeInfo{{ID: "a", Active: true}, {ID: "b", Active: true}, {ID: "c", Active: true}}
	reversed := slices.Clone(nodes)
	slices.Reverse(reversed)
	hits := map[string]int{}
	for i := range 3000 {
		actor := fmt.Sprintf("actor-%d", i)
		got, err := Choose(Request{Actor: actor}, nodes, nil)
		if err != nil {
			t.Fatal(err)
		}
		again, _ := Choose(Request{Actor: actor}, reversed, nil)
		if got != again {
			t.Fatalf("%s: choice depends on node order: %q vs %q", actor, got, again)
		}
		for _, n := range nodes {
			if Rendezvous(actor, n.ID) > Rendezvous(actor, got) {
				t.Fatalf("%s: chose %q but %q scores higher", actor, got, n.ID)
			}
		}
		hits[got]++
	}
	for _, n := range nodes {
		if hits[n.ID] < 900 || hits[n.ID] > 1100 {
			t.Errorf("node %q won %d of 3000 ties, want about 1000: %v", n.ID, hits[n.ID], hits)
		}
	}
}

// TestRendezvousStable pins the hash: placements depend on it, so it must
// never change. It is checked against an independent implementation of
// its definition (FNV-1a 64 of actor+"\x00"+node, then splitmix64's
// finalizer) and against literal values.
func TestRendezvousStable(t *testing.T) {
	ref := func(actor, node string) uint64 {
		h := fnv.New64a()
		h.Write([]byte(actor + "\x00" + node))
		z := h.Sum64()
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
		z = (z ^ (z >> 27)) * 0x94d049bb133111eb
		return z ^ (z >> 31)
	}
	for _, c := range [][2]string{{"", ""}, {"a", "b"}, {"ab", ""}, {"", "ab"}, {"actor-1", "node-1"}, {"é", "\x00"}} {
		if got, want := Rendezvous(c[0], c[1]), ref(c[0], c[1]); got != want {
			t.Errorf("Rendezvous(%q, %q) = %#x, reference %#x", c[0], c[1], got, want)
		}
	}
	golden := []struct {
		actor, node string
		want        uint64
	}{
		{"", "", 0x25fc6dd36ce04b20},
		{"actor-1", "node-1", 0x74941a3721f1adad},
		{"actor-1", "node-2", 0x1823103dc76b92cb},
	}
	for _, g := range golden {
		if got := Rendezvous(g.actor, g.node); got != g.want {
			t.Errorf("Rendezvous(%q, %q) = %#x, want %#x (the hash must never change)", g.actor, g.node, got, g.want)
		}
	}
	// The separator keeps ("ab","c") and ("a","bc") apart.
	if Rendezvous("ab", "c") == Rendezvous("a", "bc") {
		t.Error("Rendezvous does not separate actor from node")
	}
}

// TestChooseDistribution places 10,000 actors one by one over 10 equal nodes
// with the table's counts as the load: least-loaded placement must leave
// every node with exactly 1,000.
func TestChooseDistribution(t *testing.T) {
	var nodes []NodeInfo
	for i := range 10 {
		nodes = append(nodes, NodeInfo{ID: fmt.Sprintf("node-%d", i), Active: true})
	}
	tb := NewTable()
	for i := range 10_000 {
		actor := fmt.Sprintf("actor-%d", i)
		n, err := Choose(Request{Actor: actor}, nodes, tb.Count)
		if err != nil {
			t.Fatal(err)
		}
		tb.Put(Placement{Actor: actor, Node: n, Token: uint64(i + 1), State: StateActive})
	}
	for _, n := range nodes {
		if got := tb.Count(n.ID); got != 1000 {
			t.Errorf("Count(%q) = %d, want 1000", n.ID, got)
		}
	}
}

// referenceChoose is the naive statement of the policy: collect the
// eligible nodes, honour the preference, else sort by (load, -score, id).
func referenceChoose(req Request, nodes []NodeInfo, load map[string]int) (string, error) {
	type cand struct {
		id    string
		load  int
		score uint64
	}
	var eligible []cand
	matched := false
	keys := make([]string, 0, len(req.Labels))
	for k := range req.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
NODES:
	for _, n := range nodes {
		if !n.Active || n.ID == "" || (req.Zone != "" && req.Zone != n.Zone) {
			continue
		}
		for _, k := range keys {
			if v, ok := n.Labels[k]; !ok || v != req.Labels[k] {
				continue NODES
			}
		}
		matched = true
		l := load[n.ID]
		if n.Capacity < 0 || (n.Capacity > 0 && l >= n.Capacity) {
			continue
		}
		eligible = append(eligible, cand{n.ID, l, Rendezvous(req.Actor, n.ID)})
	}
	if len(eligible) == 0 {
		if matched {
			return "", ErrNoCapacity
		}
		return "", ErrNoEligibleNode
	}
	for _, c := range eligible {
		if req.Prefer != "" && c.id == req.Prefer {
			return c.id, nil
		}
	}
	sort.Slice(eligible, func(i, j int) bool {
		a, b := eligible[i], eligible[j]
		if a.load != b.load {
			return a.load < b.load
		}
		if a.score != b.score {
			return a.score > b.score
		}
		return a.id < b.id
	})
	return eligible[0].id, nil
}

var (
	idPool    = []string{"n0", "n1", "n2", "n3", "n4", "n5", "n6", "n7", "n8", "n9", "n10", "n11"}
	zonePool  = []string{"", "a", "b"}
	labelKeys = []string{"disk", "gpu"}
	labelVals = []string{"", "ssd", "hdd"}
)

func drawLabels(t *rapid.T, name string) map[string]string {
	var m map[string]string
	for _, k := range labelKeys {
		if rapid.Bool().Draw(t, name+"."+k) {
			if m == nil {
				m = map[string]string{}
			}
			m[k] = rapid.SampledFrom(labelVals).Draw(t, name+"."+k+"=")
		}
	}
	return m
}

func drawNodes(t *rapid.T) []NodeInfo {
	ids := rapid.Permutation(idPool).Draw(t, "ids")[:rapid.IntRange(0, len(idPool)).Draw(t, "n")]
	nodes := make([]NodeInfo, len(ids))
	for i, id := range ids {
		if rapid.IntRange(0, 15).Draw(t, "noID") == 0 {
			id = ""
		}
		nodes[i] = NodeInfo{
			ID:       id,
			Zone:     rapid.SampledFrom(zonePool).Draw(t, "zone"),
			Labels:   drawLabels(t, "labels"),
			Capacity: rapid.OneOf(rapid.Just(0), rapid.IntRange(-1, 6)).Draw(t, "capacity"),
			Active:   rapid.IntRange(0, 3).Draw(t, "active") > 0,
		}
	}
	return nodes
}

func drawRequest(t *rapid.T) Request {
	req := Request{
		Actor:  rapid.String().Draw(t, "actor"),
		Prefer: rapid.SampledFrom(append([]string{"", "nX"}, idPool...)).Draw(t, "prefer"),
	}
	if rapid.IntRange(0, 2).Draw(t, "withZone") == 0 {
		req.Zone = rapid.SampledFrom([]string{"a", "b", "c"}).Draw(t, "reqZone")
	}
	if rapid.IntRange(0, 2).Draw(t, "withLabels") == 0 {
		req.Labels = drawLabels(t, "reqLabels")
	}
	return req
}

// TestChooseMatchesReference compares Choose with referenceChoose over
// random node sets, loads, capacities, zones and labels, and checks that the
// load function is asked at most once per node.
func TestChooseMatchesReference(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		nodes := drawNodes(t)
		load := map[string]int{}
		for _, n := range nodes {
			load[n.ID] = rapid.IntRange(0, 5).Draw(t, "load")
		}
		req := drawRequest(t)
		calls := map[string]int{}
		got, err := Choose(req, nodes, func(id string) int { calls[id]++; return load[id] })
		want, wantErr := referenceChoose(req, nodes, load)
		if got != want || !errors.Is(err, wantErr) || (err == nil) != (wantErr == nil) {
			t.Fatalf("Choose = %q, %v; reference = %q, %v", got, err, want, wantErr)
		}
		for id, c := range calls {
			if c > 1 && id != "" {
				t.Fatalf("load(%q) called %d times", id, c)
			}
		}
	})
}

// TestChoosePlacementConsistency (G5 PlacementConsistency): placing actors
// one after another with the table's counts as load, every choice is an
// Active node that matches the request and still has capacity, so no node
// ever exceeds its capacity; and when Choose fails, no node was eligible.
func TestChoosePlacementConsistency(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		nodes := drawNodes(t)
		byID := map[string]NodeInfo{}
		for _, n := range nodes {
			byID[n.ID] = n
		}
		tb := NewTable()
		steps := rapid.IntRange(1, 40).Draw(t, "steps")
		for i := range steps {
			req := drawRequest(t)
			req.Actor = fmt.Sprintf("actor-%d", i)
			got, err := Choose(req, nodes, tb.Count)
			if err != nil {
				counts := map[string]int{}
				for _, n := range nodes {
					counts[n.ID] = tb.Count(n.ID)
				}
				if id, refErr := referenceChoose(req, nodes, counts); refErr == nil {
					t.Fatalf("Choose failed (%v) but %q was eligible", err, id)
				}
				continue
			}
			n, ok := byID[got]
			switch {
			case !ok || got == "":
				t.Fatalf("chose unknown node %q", got)
			case !n.Active:
				t.Fatalf("chose inactive node %q", got)
			case req.Zone != "" && n.Zone != req.Zone:
				t.Fatalf("chose %q in zone %q, want zone %q", got, n.Zone, req.Zone)
			}
			for k, v := range req.Labels {
				if w, ok := n.Labels[k]; !ok || w != v {
					t.Fatalf("chose %q with labels %v, want %v", got, n.Labels, req.Labels)
				}
			}
			tb.Put(Placement{Actor: req.Actor, Node: got, Token: uint64(i + 1), State: StateActive})
			if n.Capacity != 0 && tb.Count(got) > n.Capacity {
				t.Fatalf("node %q holds %d actors, capacity %d", got, tb.Count(got), n.Capacity)
			}
		}
	})
}

func benchNodes(n int) ([]NodeInfo, map[string]int) {
	nodes := make([]NodeInfo, n)
	load := make(map[string]int, n)
	for i := range nodes {
		id := fmt.Sprintf("node-%04d", i)
		nodes[i] = NodeInfo{
			ID:       id,
			Zone:     zonePool[1+i%2],
			Labels:   map[string]string{"disk": labelVals[1+i%2], "rack": fmt.Sprint(i % 10)},
			Capacity: 1000,
			Active:   true,
		}
		load[id] = (i * 7919) % 50 // about 20 nodes share the lowest load
	}
	return nodes, load
}

func TestChooseDoesNotAllocate(t *testing.T) {
	nodes, load := benchNodes(100)
	req := Request{Actor: "actor-1", Zone: "a", Labels: map[string]string{"disk": "ssd"}}
	lf := loads(load)
	if n := testing.AllocsPerRun(100, func() { _, _ = Choose(req, nodes, lf) }); n != 0 {
		t.Fatalf("Choose allocates %v times per call", n)
	}
}

func BenchmarkChoose1000Nodes(b *testing.B) {
	nodes, load := benchNodes(1000)
	lf := loads(load)
	actors := make([]string, 64)
	for i := range actors {
		actors[i] = fmt.Sprintf("actor-%d", i)
	}
	for _, bc := range []struct {
		name string
		req  Request
	}{
		{"any", Request{}},
		{"zone+label", Request{Zone: "a", Labels: map[string]string{"disk": "ssd"}}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				bc.req.Actor = actors[i%len(actors)]
				if _, err := Choose(bc.req, nodes, lf); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}
