package cluster

import (
	"encoding/json"
	"slices"
	"strings"
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

	// log holds, for the last views offered (oldest first), which records
	// each changed from the view offered before it, for deltas; nil when
	// the box keeps no history. Under mu.
	log    []viewChangeLog
	logCap int
}

// viewChangeLog says which members differ between two consecutive views
// offered to a box: changed (added or modified) and removed IDs.
type viewChangeLog struct {
	from, to         uint64
	changed, removed []string
}

func newViewBox() *viewBox { return &viewBox{changed: make(chan struct{})} }

// viewHistory is how many recent view changes a server remembers (member
// IDs only) to answer delta queries. A following client usually holds the
// view before the latest, but a busy or slow one may be many epochs behind
// when views change several times a second (a join storm, a wave of
// failures); beyond the history it gets the whole view.
const viewHistory = 256

// newViewBoxWithHistory returns a box that remembers the last k view
// changes offered, so that it can serve deltas from those views (servers:
// clients follow them).
func newViewBoxWithHistory(k int) *viewBox {
	b := newViewBox()
	b.logCap = k
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
// see the view go back in time. v is kept as it is, not copied: views are
// never modified once built (get hands out the same view to every reader),
// and a copy per box per view change was, at 1,000 members, 200 KB per
// client per epoch.
func (b *viewBox) offer(v consensus.View) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.set && v.Index <= b.v.Index {
		return false
	}
	if b.logCap > 0 && b.set {
		d := diffViews(b.v, v)
		ids := make([]string, len(d.Members))
		for i, m := range d.Members {
			ids[i] = m.ID
		}
		if len(b.log) == b.logCap {
			b.log = append(b.log[:0], b.log[1:]...)
		}
		b.log = append(b.log, viewChangeLog{from: b.v.Index, to: v.Index, changed: ids, removed: d.Removed})
	}
	b.v, b.set = v, true
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
// (a view got from b), and false if b does not remember the changes since
// base. Encodings are cached per base for the latest v, so that the clients
// that a view change wakes, which nearly all hold the same base, cost one
// delta and one encoding.
func (b *viewBox) encodeDelta(base uint64, v consensus.View) ([]byte, bool) {
	b.enc.Lock()
	defer b.enc.Unlock()
	if b.enc.deltas != nil && b.enc.index == v.Index {
		if body, ok := b.enc.deltas[base]; ok {
			return body, true
		}
	}
	d, ok := b.deltaSince(base, v)
	if !ok {
		return nil, false
	}
	body, err := json.Marshal(d)
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

// deltaSince builds the delta from the view at base to v from the change
// log: the records of v for every ID changed in between, and the IDs
// removed in between that v does not have.
func (b *viewBox) deltaSince(base uint64, v consensus.View) (viewDelta, bool) {
	d := viewDelta{Epoch: v.Epoch, Index: v.Index, Base: base, Count: len(v.Members), Members: []consensus.Member{}}
	if base == v.Index {
		return d, true // nothing changed
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	start := -1
	for i, l := range b.log {
		if l.from == base {
			start = i
			break
		}
	}
	if start < 0 {
		return viewDelta{}, false
	}
	ids := map[string]bool{}
	gone := map[string]bool{}
	reached := false
	for _, l := range b.log[start:] {
		for _, id := range l.changed {
			ids[id] = true
		}
		for _, id := range l.removed {
			gone[id] = true
		}
		if l.to == v.Index {
			reached = true
			break
		}
	}
	if !reached {
		return viewDelta{}, false // v is not a view this log leads to
	}
	for id := range ids {
		if m, ok := v.Member(id); ok {
			d.Members = append(d.Members, m)
		}
	}
	slices.SortFunc(d.Members, func(x, y consensus.Member) int { return strings.Compare(x.ID, y.ID) })
	for id := range gone {
		if _, ok := v.Member(id); !ok {
			d.Removed = append(d.Removed, id)
		}
	}
	slices.Sort(d.Removed)
	return d, true
}
