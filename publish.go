package cluster

import (
	"context"
	"math/rand/v2"
	"time"

	"github.com/kelpie/cluster/consensus"
	"github.com/kelpie/cluster/gossip"
)

// source returns the view this node's state machine (servers) or replica
// (clients) holds right now, and a channel closed when it changes.
func (n *Node) source() (consensus.View, <-chan struct{}) {
	if n.fsm != nil {
		return n.fsm.Watch()
	}
	v, _, ch := n.replica.get()
	return v, ch
}

// caughtUp reports whether a server's FSM has applied every entry that was on
// disk when it started, so it never serves a view older than one it served
// before a restart (MonotonicEpoch across restarts). Clients are always
// caught up: their replica only moves forward.
func (n *Node) caughtUp() bool {
	if n.fsm == nil {
		return true
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.mu.caughtUp {
		return true
	}
	if n.fsm.AppliedIndex() >= n.mu.startIndex {
		n.mu.caughtUp = true
	}
	return n.mu.caughtUp
}

// publishLoop moves committed views from the source to the published box
// (what View, the HTTP API and Events serve), once caught up.
func (n *Node) publishLoop() {
	tick := time.NewTicker(100 * time.Millisecond) // re-checks caughtUp for servers with nothing new to apply
	defer tick.Stop()
	var incarnation uint64 // this process's incarnation in the view
	for {
		v, ch := n.source()
		if n.caughtUp() && v.Index > 0 && n.pub.offer(v) {
			n.metrics.ObserveView(v)
			n.pcache.invalidate(v)
			if m, ok := v.Member(n.cfg.NodeID); ok && m.Boot == n.boot && m.Incarnation != incarnation {
				if incarnation != 0 {
					// We were committed Failed and rejoined: every placement of
					// the old incarnation was released, so nothing activated
					// under it may keep running here.
					count := n.actors.forgetBefore(n.ctx, m.JoinedAt, "rejoined as a new incarnation")
					n.logger.Warn("rejoined as a new incarnation; dropped the old incarnation's actors", "incarnation", m.Incarnation, "actors", count)
				}
				incarnation = m.Incarnation
			}
			select {
			case n.events <- ViewEvent{View: v.Clone()}:
			default:
				n.metrics.EventsDropped.Inc()
			}
		}
		select {
		case <-n.ctx.Done():
			return
		case <-ch:
		case <-tick.C:
		}
	}
}

// pumpGossip reads gossip events and pokes the leader's reconciler. It never
// blocks: one pending poke is enough because reconcile reads full state.
func (n *Node) pumpGossip() {
	for {
		select {
		case <-n.ctx.Done():
			return
		case ev, ok := <-n.gossip.Events():
			if !ok {
				return
			}
			n.logger.Debug("gossip event", "type", ev.Type.String(), "member", ev.Member.Name, "status", ev.Member.Status.String())
			if ev.Type == gossip.EventFailed && n.raft != nil {
				// Only a server can become the leader that commits the
				// failure and observes the detection latency; a client
				// would keep every failed member's name forever.
				n.metrics.NoteFailureSignal(ev.Member.Name, ev.At)
			}
			n.pokeReconcile()
		}
	}
}

func (n *Node) pokeReconcile() {
	select {
	case n.reconcileCh <- struct{}{}:
	default:
	}
}

// followLoop keeps a client's replica of the committed view current with
// blocking queries against servers (Consul-style), rotating servers on error.
func (n *Node) followLoop() {
	var last string
	backoff := 100 * time.Millisecond
	for n.ctx.Err() == nil {
		addr := n.pickServer(last)
		if addr == "" {
			sleepCtx(n.ctx, 200*time.Millisecond)
			continue
		}
		c, err := n.peerClient(addr)
		if err != nil {
			last = ""
			continue
		}
		cur, _, _ := n.replica.get()
		ctx, cancel := context.WithTimeout(n.ctx, n.cfg.FollowWait+5*time.Second)
		v, err := c.viewSince(ctx, cur, n.cfg.FollowWait)
		cancel()
		if err != nil {
			n.mu.Lock()
			n.mu.lastFollowErr = err
			n.mu.Unlock()
			last = ""
			sleepCtx(n.ctx, backoff)
			if backoff < 2*time.Second {
				backoff *= 2
			}
			continue
		}
		backoff = 100 * time.Millisecond
		last = addr
		n.replica.offer(v)
	}
}

// pickServer returns the HTTP address of an alive server to read from:
// prefer keeps the current one, otherwise one is chosen at random so that
// thousands of clients spread over the servers.
func (n *Node) pickServer(prefer string) string {
	servers := n.gossip.AliveServers()
	var addrs []string
	for _, s := range servers {
		if s.Tags.HTTPAddr != "" {
			if s.Tags.HTTPAddr == prefer {
				return prefer
			}
			addrs = append(addrs, s.Tags.HTTPAddr)
		}
	}
	if len(addrs) == 0 {
		return ""
	}
	return addrs[rand.IntN(len(addrs))]
}
