package cluster

import (
	"encoding/json"
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

	// enc caches the JSON of the latest view served, so that a view change
	// woken up a thousand blocking queries is encoded once, not a thousand
	// times.
	enc struct {
		sync.Mutex
		index uint64
		body  []byte
	}
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

// encode returns v (a view got from b) as JSON, reusing the encoding of an
// earlier call for the same Raft index. A view is immutable per index, so
// the cached bytes are exactly what encoding v again would produce.
func (b *viewBox) encode(v consensus.View) ([]byte, error) {
	b.enc.Lock()
	defer b.enc.Unlock()
	if b.enc.body != nil && b.enc.index == v.Index {
		return b.enc.body, nil
	}
	body, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	body = append(body, '\n')
	if v.Index >= b.enc.index {
		b.enc.index, b.enc.body = v.Index, body
	}
	return body, nil
}
