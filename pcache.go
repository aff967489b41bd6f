package cluster

import (
	"sync"

	"github.com/kelpie/cluster/consensus"
	"github.com/kelpie/cluster/placement"
)

// placementCache is what a node remembers of placements it has looked up or
// made (clients have no replica of the table). Entries are dropped when a
// view change takes their node out of service and when an owner rejects
// work sent under them (stale token, not owner, migrating). A placement that
// is Migrating is never kept: it is about to change (a migration ends with a
// new token or an abort), so whoever needs it asks a server again.
type placementCache struct {
	mu      sync.Mutex
	entries map[string]cacheEntry
	max     int
}

type cacheEntry struct {
	p     placement.Placement
	index uint64
}

func newPlacementCache(max int) *placementCache {
	return &placementCache{entries: map[string]cacheEntry{}, max: max}
}

func (c *placementCache) get(actor string) (placement.Placement, uint64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[actor]
	return e.p, e.index, ok
}

func (c *placementCache) put(p placement.Placement) { c.putAt(p, p.Token) }

func (c *placementCache) putAt(p placement.Placement, index uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.entries[p.Actor]; ok && old.p.Token > p.Token {
		return // never replace a newer placement with an older one
	}
	if p.State == placement.StateMigrating {
		delete(c.entries, p.Actor) // what was cached is out of date too
		return
	}
	if len(c.entries) >= c.max {
		for k := range c.entries { // evict an arbitrary entry; it is only a cache
			delete(c.entries, k)
			break
		}
	}
	c.entries[p.Actor] = cacheEntry{p: p, index: index}
}

func (c *placementCache) drop(actor string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.entries, actor)
}

// invalidate drops every entry whose node is no longer Active (or is another
// incarnation) in v.
func (c *placementCache) invalidate(v consensus.View) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for actor, e := range c.entries {
		m, ok := v.Member(e.p.Node)
		if !ok || (m.Status != consensus.StatusActive && m.Status != consensus.StatusLeaving) || m.Incarnation != e.p.Incarnation {
			delete(c.entries, actor)
		}
	}
}
