package cluster

import (
	"testing"

	"github.com/kelpie/cluster/placement"
)

func TestPlacementCacheNeverKeepsMigrating(t *testing.T) {
	c := newPlacementCache(10)
	active := placement.Placement{Actor: "a", Node: "n1", Token: 5, State: placement.StateActive}
	c.put(active)
	if _, _, ok := c.get("a"); !ok {
		t.Fatal("active placement not cached")
	}
	migrating := active
	migrating.State = placement.StateMigrating
	c.putAt(migrating, 9)
	if p, _, ok := c.get("a"); ok {
		t.Fatalf("cache holds %+v after the placement turned Migrating", p)
	}
	c.putAt(migrating, 9)
	if _, _, ok := c.get("a"); ok {
		t.Fatal("a Migrating placement was cached")
	}
	moved := placement.Placement{Actor: "a", Node: "n2", Token: 12, State: placement.StateActive}
	c.putAt(moved, 12)
	if p, _, ok := c.get("a"); !ok || p.Token != 12 {
		t.Fatalf("after the migration: %+v %v", p, ok)
	}
	// An older Migrating answer neither replaces nor drops a newer entry.
	c.putAt(migrating, 9)
	if p, _, ok := c.get("a"); !ok || p.Token != 12 {
		t.Fatalf("older migrating answer changed the entry: %+v %v", p, ok)
	}
}
