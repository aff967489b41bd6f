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
		// deltas caches, for the view at index, the encoded delta from
		// each base a blocking query named.
		deltas map[uint64][]byte
	}

	// hist holds the last few views offered (oldest first), for deltas;
	// nil when the box keeps no history. Under mu.
	hist    []consensus.View
	histCap int
}

func newViewBox() *viewBox { return &viewBox{changed: make(chan struct{})} }

// viewHistory is how many recent views a server keeps to answer delta
// queries. A following client holds the view before the latest almost
// always; older ones (a client that was slow or switched servers) get the
// whole view.
const viewHistory = 4

// newViewBoxWithHistory returns a box that keeps the last k views offered,
// so that it can serve deltas against them (servers: clients follow them).
func newViewBoxWithHistory(k int) *viewBox {
	b := newViewBox()
	b.histCap = k
	return b
}

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
	if b.histCap > 0 {
		if len(b.hist) == b.histCap {
			b.hist = append(b.hist[:0], b.hist[1:]...)
		}
		b.hist = append(b.hist, b.v) // b.v is never modified, only replaced
	}
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
	if v.Index > b.enc.index {
		b.enc.deltas = nil // they were for an older view
	}
	if v.Index >= b.enc.index {
		b.enc.index, b.enc.body = v.Index, body
	}
	return body, nil
}

// encodeDelta returns, as JSON, the delta from the view at index base to v
// (a view got from b), and false if b no longer holds the view at base.
// Encodings are cached per base for the latest v, so that the clients that
// a view change wakes, which nearly all hold the same base, cost one diff
// and one encoding.
func (b *viewBox) encodeDelta(base uint64, v consensus.View) ([]byte, bool) {
	b.enc.Lock()
	defer b.enc.Unlock()
	if b.enc.deltas != nil && b.enc.index == v.Index {
		if body, ok := b.enc.deltas[base]; ok {
			return body, true
		}
	}
	old, ok := b.historic(base)
	if !ok {
		return nil, false
	}
	body, err := json.Marshal(diffViews(old, v))
	if err != nil {
		return nil, false
	}
	body = append(body, '\n')
	if v.Index > b.enc.index {
		b.enc.index, b.enc.body, b.enc.deltas = v.Index, nil, nil
	}
	if v.Index == b.enc.index {
		if b.enc.deltas == nil {
			b.enc.deltas = map[uint64][]byte{}
		}
		b.enc.deltas[base] = body
	}
	return body, true
}

// historic returns the view at index from the box's history.
func (b *viewBox) historic(index uint64) (consensus.View, bool) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	for _, h := range b.hist {
		if h.Index == index {
			return h, true
		}
	}
	return consensus.View{}, false
}
