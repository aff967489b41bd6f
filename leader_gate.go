package cluster

import (
	"context"
	"sync"
	"time"
)

// leaderGate tells leader-side code when the leader's own FSM can be trusted.
//
// A server that wins an election may hold entries of earlier terms that it
// has not applied yet: it learns that they are committed only once an entry
// of its own term commits. Until then IsLeader and even VerifyLeader succeed
// while its view is stale (a member the previous leader committed Failed can
// still look Active). Everything the leader decides from its FSM — lease
// grants, consistent reads, drains, releases, migrations — waits for the gate,
// which the leader session opens after its post-election Barrier has been
// applied, for the term it was elected in.
type leaderGate struct {
	mu    sync.Mutex
	term  uint64        // term whose session has applied its barrier (0: none)
	ready chan struct{} // closed while term != 0
}

func newLeaderGate() *leaderGate { return &leaderGate{ready: make(chan struct{})} }

// open marks the leader of term ready.
func (g *leaderGate) open(term uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.term == 0 {
		close(g.ready)
	}
	g.term = term
}

// shut marks no session ready (leadership lost or a new session starting).
func (g *leaderGate) shut() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.term != 0 {
		g.ready = make(chan struct{})
	}
	g.term = 0
}

func (g *leaderGate) state() (uint64, <-chan struct{}) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.term, g.ready
}

// leaderReady returns nil when this server leads and its FSM reflects every
// entry committed before its term, waiting for that (bounded by ctx) right
// after an election. ErrNotLeader when it does not lead.
func (n *Node) leaderReady(ctx context.Context) error {
	for {
		if n.raft == nil || !n.raft.IsLeader() {
			return ErrNotLeader
		}
		term, ready := n.gate.state()
		if term != 0 && term == n.raft.Term() {
			return nil
		}
		if term != 0 {
			// Ready for an earlier term: leadership was lost and won again
			// unnoticed; the leadership loop restarts the session within
			// its poll interval.
			ready = nil
		}
		select {
		case <-ready:
		case <-time.After(10 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
