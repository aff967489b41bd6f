package cluster

import (
	"sync"

	"github.com/kelpie/cluster/consensus"
)

// viewBox holds a view that only moves forward, and a channel closed on
// every update (for blocking queries). Used for a client's replica and for
// the view a node publishes.
type viewBox struct {
	mu      sync.RWMutex
	v       consensus.View
	set     bool
	changed chan struct{}
}

func newViewBox() *viewBox { return &viewBox{changed: make(chan struct{})} }

// get returns the current view, whether one was ever set, and a channel
// closed on the next update.
func (b *viewBox) get() (consensus.View, bool, <-chan struct{}) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.v, b.set, b.changed
}

// offer installs v if it is newer (by Raft index) than the current view and
// reports whether it did. Older or equal views are ignored, so readers never
// see the view go back in time.
func (b *viewBox) offer(v consensus.View) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.set && v.Index <= b.v.Index {
		return false
	}
	b.v, b.set = v.Clone(), true
	close(b.changed)
	b.changed = make(chan struct{})
	return true
}
