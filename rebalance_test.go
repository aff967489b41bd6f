package cluster

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"
)

func TestPlanRebalance(t *testing.T) {
	actors := func(prefix string, n int) []string {
		var out []string
		for i := 0; i < n; i++ {
			out = append(out, fmt.Sprintf("%s%02d", prefix, i))
		}
		return out
	}
	cases := []struct {
		name    string
		loads   map[string]int
		movable map[string][]string
		max     int
		want    []move
	}{
		{name: "balanced: nothing", loads: map[string]int{"a": 5, "b": 5}, movable: map[string][]string{"a": actors("a", 5)}, max: 8},
		{name: "within ratio: nothing", loads: map[string]int{"a": 6, "b": 5}, movable: map[string][]string{"a": actors("a", 6)}, max: 8},
		{name: "bounded per round", loads: map[string]int{"a": 20, "b": 0}, movable: map[string][]string{"a": actors("a", 20)}, max: 3,
			want: []move{{"a00", "a", "b"}, {"a01", "a", "b"}, {"a02", "a", "b"}}},
		{name: "spreads to the least loaded", loads: map[string]int{"a": 6, "b": 0, "c": 0}, movable: map[string][]string{"a": actors("a", 6)}, max: 8,
			want: []move{{"a00", "a", "b"}, {"a01", "a", "c"}, {"a02", "a", "b"}, {"a03", "a", "c"}}},
		{name: "only movable actors", loads: map[string]int{"a": 10, "b": 0}, movable: map[string][]string{"a": actors("a", 1)}, max: 8,
			want: []move{{"a00", "a", "b"}}},
		{name: "single node", loads: map[string]int{"a": 10}, movable: map[string][]string{"a": actors("a", 10)}, max: 8},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := planRebalance(c.loads, c.movable, 1.25, c.max)
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("got %v, want %v", got, c.want)
			}
		})
	}
}

// TestRebalanceMovesLoadInBoundedRounds: with everything on one node, rounds
// of at most MaxPerRound migrations even the load out.
func TestRebalanceMovesLoadInBoundedRounds(t *testing.T) {
	tc, _ := startFleet(t, 2)
	leader := tc.waitLeader()
	for i := 0; i < 30; i++ {
		placeOn(t, leader, fmt.Sprintf("rb-%d", i), "c1", 1)
	}
	leader.cfg.Rebalance = RebalanceConfig{Enabled: true, Interval: time.Hour, Ratio: 1.25, MaxPerRound: 4}
	if moved := leader.rebalanceOnce(context.Background()); moved != 4 {
		t.Fatalf("first round moved %d, want the bound 4", moved)
	}
	for round := 0; round < 20; round++ {
		if leader.rebalanceOnce(context.Background()) == 0 {
			break
		}
	}
	loads := map[string]int{}
	for _, id := range []string{"s1", "s2", "s3", "c1", "c2"} {
		loads[id] = leader.fsm.PlacementCount(id)
	}
	t.Logf("loads after rebalancing: %v", loads)
	for id, l := range loads {
		if float64(l) > 1.25*6+1 {
			t.Errorf("%s still hosts %d of 30 actors", id, l)
		}
	}
	for i := 0; i < 30; i += 7 {
		if v, _ := value(t, tc.node("s2"), fmt.Sprintf("rb-%d", i)); v != 1 {
			t.Errorf("rb-%d = %d after rebalancing, want 1", i, v)
		}
	}
	tc.checkSingleActivation()
}
