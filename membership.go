package cluster

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"time"

	"github.com/kelpie/cluster/consensus"
	"github.com/kelpie/cluster/internal/netx"
	"github.com/kelpie/cluster/placement"
)

// Join joins gossip through seeds (ip:port of any members' gossip address;
// none for the first server) and returns only once this node is Active in the
// committed view, as this incarnation. It fails when ctx ends first, saying
// how far it got.
func (n *Node) Join(ctx context.Context, seeds []string) error {
	if n.closed() {
		return ErrClosed
	}
	if len(seeds) > 0 {
		for {
			_, err := n.gossip.Join(ctx, seeds)
			if err == nil {
				break
			}
			n.logger.Warn("gossip join failed; retrying", "seeds", seeds, "err", err)
			if !sleepCtx(ctx, 500*time.Millisecond) {
				return fmt.Errorf("join: gossip: %w (last error: %v)", ctx.Err(), err)
			}
		}
	}
	for {
		v, _, ch := n.pub.get()
		if m, ok := v.Member(n.cfg.NodeID); ok && m.Boot == n.boot && m.Status == consensus.StatusActive {
			n.logger.Info("joined", "epoch", v.Epoch, "incarnation", m.Incarnation)
			return nil
		}
		select {
		case <-ctx.Done():
			m, _ := v.Member(n.cfg.NodeID)
			return fmt.Errorf("join: not active in the committed view (view epoch %d, our status %s): %w", v.Epoch, m.Status, ctx.Err())
		case <-n.ctx.Done():
			return ErrClosed
		case <-ch:
		}
	}
}

// Leave leaves the cluster gracefully: it asks the leader to commit this
// node Leaving then Left (a leader first transfers leadership), then leaves
// gossip. Without a quorum it returns ErrNoQuorum and stays a member. Close
// the node afterwards.
func (n *Node) Leave(ctx context.Context) error {
	if n.closed() {
		return ErrClosed
	}
	self, ok := n.Self()
	if ok && self.Boot == n.boot && self.Status != consensus.StatusLeft && self.Status != consensus.StatusFailed {
		if n.raft != nil && n.raft.IsLeader() {
			if peers, err := n.raft.Configuration(); err == nil && countVoters(peers) > 1 {
				tctx, cancel := context.WithTimeout(ctx, n.cfg.QuorumTimeout)
				err := n.raft.TransferLeadership(tctx)
				cancel()
				if err != nil {
					n.logger.Warn("leadership transfer before leave failed", "err", err)
				}
			}
		}
		if err := n.forwardFor(ctx, n.cfg.QuorumTimeout+n.cfg.DrainTimeout, func(ctx context.Context, c *Client) error {
			return c.leave(ctx, leaveRequest{ID: n.cfg.NodeID, Boot: n.boot})
		}); err != nil {
			return fmt.Errorf("leave: %w", err)
		}
		// Wait (bounded) until our own served view shows us Left, so that
		// observers of this node see the outcome too.
		wctx, cancel := context.WithTimeout(ctx, n.cfg.QuorumTimeout)
		n.waitSelf(wctx, consensus.StatusLeft)
		cancel()
	}
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := n.gossip.Leave(lctx); err != nil {
		// The committed Left is what matters; gossip peers that missed the
		// broadcast see the node fail instead, and the view already says Left.
		n.logger.Warn("gossip leave broadcast incomplete", "err", err)
	}
	n.logger.Info("left the cluster")
	return nil
}

func (n *Node) waitSelf(ctx context.Context, s consensus.Status) bool {
	for {
		v, _, ch := n.pub.get()
		if m, ok := v.Member(n.cfg.NodeID); ok && m.Status == s {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-ch:
		}
	}
}

func countVoters(peers []consensus.Peer) int {
	v := 0
	for _, p := range peers {
		if p.Voter {
			v++
		}
	}
	return v
}

// leaveMember runs on the leader: it commits id Leaving and then Left
// (Joining members go Failed, Left), then takes a server out of Raft. It is
// idempotent: a member already Left succeeds at once.
func (n *Node) leaveMember(ctx context.Context, id, boot string) error {
	rec, ok := n.fsm.View().Member(id)
	if !ok || rec.Status == consensus.StatusNone {
		return fmt.Errorf("%w: %q", ErrUnknownNode, id)
	}
	if boot != "" && rec.Boot != boot {
		return fmt.Errorf("%w: %q is another incarnation (boot %s, asked for %s)", ErrUnknownNode, id, rec.Boot, boot)
	}
	var steps []consensus.Status
	switch rec.Status {
	case consensus.StatusActive:
		steps = []consensus.Status{consensus.StatusLeaving, consensus.StatusLeft}
	case consensus.StatusLeaving, consensus.StatusFailed:
		steps = []consensus.Status{consensus.StatusLeft}
	case consensus.StatusJoining:
		steps = []consensus.Status{consensus.StatusFailed, consensus.StatusLeft}
	}
	for _, s := range steps {
		if s == consensus.StatusLeft && rec.Status != consensus.StatusJoining {
			n.drainForLeave(ctx, id)
		}
		m := rec
		m.Status = s
		_, err := n.commitLocal(ctx, consensus.ViewChange{Changes: []consensus.Change{{Member: m}}, Reason: "leave"})
		if err != nil && !errors.Is(err, consensus.ErrNoChange) {
			return err
		}
	}
	if rec.Role == consensus.RoleServer && id != n.cfg.NodeID {
		if err := n.voters.RemoveServer(id); err != nil {
			n.logger.Warn("remove leaving server from raft", "member", id, "err", err)
		}
	}
	return nil
}

// drainForLeave moves a leaving node's actors away (bounded by
// DrainTimeout), then releases whatever could not move, deactivating it on
// the node first, so that committing Left never strands a live actor.
func (n *Node) drainForLeave(ctx context.Context, id string) {
	dctx, cancel := context.WithTimeout(ctx, n.cfg.DrainTimeout)
	res, err := n.drainLocal(dctx, id)
	cancel()
	if err == nil {
		return
	}
	n.logger.Warn("drain before leave incomplete; releasing the rest", "member", id, "moved", res.Moved, "left", len(res.Failed), "err", err)
	ps, _ := n.fsm.PlacementsByNode(id)
	var items []consensus.ReleaseItem
	for _, p := range ps {
		if p.State == placement.StateMigrating {
			continue // its migration commits or aborts; Left then orphans it
		}
		if err := n.deactivateOn(ctx, p); err != nil {
			n.logger.Warn("cannot deactivate on leaving node; Left will orphan it", "actor", p.Actor, "err", err)
			continue
		}
		items = append(items, consensus.ReleaseItem{Actor: p.Actor, Token: p.Token})
	}
	for len(items) > 0 {
		batch := items[:min(len(items), consensus.MaxBatchItems)]
		items = items[len(batch):]
		cmd, err := consensus.EncodeRelease(consensus.ReleaseBatch{Items: batch, Reason: "leave", ProposedAtUnixNano: time.Now().UnixNano()})
		if err == nil {
			_, err = n.applyGated(ctx, cmd)
		}
		if err != nil {
			n.logger.Warn("release before leave failed", "err", err)
			return
		}
	}
}

// forward runs call against the leader (servers that know it) or any alive
// server (clients; servers forward on), retrying on transport errors and
// leader changes until Config.QuorumTimeout. Running out of time is
// ErrNoQuorum.
func (n *Node) forward(ctx context.Context, call func(context.Context, *Client) error) error {
	return n.forwardFor(ctx, n.cfg.QuorumTimeout, call)
}

// forwardFor is forward with its own bound for the call, for calls that
// legitimately run long on the leader (a leave that drains first). Finding a
// leader that answers is still bounded by QuorumTimeout.
func (n *Node) forwardFor(ctx context.Context, bound time.Duration, call func(context.Context, *Client) error) error {
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	// A server forwards straight to the leader; a client's request may be
	// forwarded once more by a server. Servers give up searching sooner so
	// that their answer (no quorum) reaches a waiting client in time.
	search := n.cfg.QuorumTimeout
	if n.raft != nil {
		search = search * 2 / 3
	}
	searchUntil := time.Now().Add(search)
	var last error
	wait := forwardRetryMin
	for {
		addr := n.forwardTarget()
		if addr != "" {
			c, err := n.peerClient(addr)
			if err == nil {
				err = call(ctx, c)
				if err == nil {
					return nil
				}
				var nq *NoQuorumError
				switch {
				case errors.As(err, &nq):
					return err
				case isTransport(err) && !notSent(err):
					// The request may have reached the leader and may still
					// take effect: never report that as "no quorum" (a
					// refusal) nor retry it.
					return fmt.Errorf("%w: %v", ErrUnknownOutcome, err)
				case isTransport(err), errors.Is(err, ErrNotLeader), errors.Is(err, ErrNotReady):
					last = err
				default:
					return err
				}
			}
		} else {
			last = errors.New("no leader known")
		}
		if time.Now().After(searchUntil) || !sleepCtx(ctx, jitter(wait)) {
			reach, total := n.reachableVoters()
			return &NoQuorumError{Reachable: reach, Total: total, Cause: last}
		}
		wait = min(2*wait, forwardRetryMax)
	}
}

// Forwarding retries back off from forwardRetryMin to forwardRetryMax.
// Without a leader every member's lease renewal is forwarded at once: at a
// fixed 100 ms a thousand members sent ten thousand requests a second to
// the servers, which starved the very election that would end it.
const (
	forwardRetryMin = 100 * time.Millisecond
	forwardRetryMax = 800 * time.Millisecond
)

// jitter spreads d over [0.75d, 1.25d) so that members that lost the
// leader together do not retry in lockstep.
func jitter(d time.Duration) time.Duration {
	return d*3/4 + rand.N(d/2)
}

// notSent reports whether a transport error proves the request never left
// this node: the connection could not be made, or (in-process tests) the
// fault filter refused the first write.
func notSent(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	return errors.As(err, &op) && op.Op == "write" && errors.Is(err, netx.ErrFiltered)
}

// forwardTarget is where forwarded writes go: the leader's HTTP address on a
// server that knows it, else any alive server.
func (n *Node) forwardTarget() string {
	if n.raft != nil {
		if id, _ := n.raft.Leader(); id != "" {
			if id == n.cfg.NodeID {
				return n.HTTPAddr()
			}
			if g, ok := n.gossip.Member(id); ok && g.Tags.HTTPAddr != "" {
				return g.Tags.HTTPAddr
			}
		}
		return ""
	}
	return n.pickServer("")
}

// Leader returns the current leader as this node knows it.
func (n *Node) Leader() LeaderInfo {
	if n.raft == nil {
		return n.followedLeader()
	}
	id, addr := n.raft.Leader()
	li := LeaderInfo{ID: id, RaftAddr: addr, Known: id != "", Term: n.raft.Stats().Term}
	if g, ok := n.gossip.Member(id); ok {
		li.HTTPAddr = g.Tags.HTTPAddr
	}
	return li
}

// followedLeaderTries bounds how many servers a client asks who leads, at
// followedLeaderWait each: one that does not answer or knows no leader (a
// frozen or cut-off server its gossip still shows alive) does not make the
// client report "no leader" while the others know one.
const (
	followedLeaderTries = 3
	followedLeaderWait  = time.Second
)

// followedLeader asks servers (clients do not run Raft) who leads: the
// alive servers in random order, until one knows a leader.
func (n *Node) followedLeader() LeaderInfo {
	var addrs []string
	for _, s := range n.gossip.AliveServers() {
		if s.Tags.HTTPAddr != "" {
			addrs = append(addrs, s.Tags.HTTPAddr)
		}
	}
	rand.Shuffle(len(addrs), func(i, j int) { addrs[i], addrs[j] = addrs[j], addrs[i] })
	for i, addr := range addrs {
		if i == followedLeaderTries {
			break
		}
		c, err := n.peerClient(addr)
		if err != nil {
			continue
		}
		ctx, cancel := context.WithTimeout(n.ctx, followedLeaderWait)
		li, err := c.Leader(ctx)
		cancel()
		if err == nil && li.Known {
			return *li
		}
	}
	return LeaderInfo{}
}
