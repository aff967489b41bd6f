package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/kelpie/cluster/consensus"
	"github.com/kelpie/cluster/gossip"
	"github.com/kelpie/cluster/migration"
)

// leadershipLoop runs a leader session while this server leads and stops it
// as soon as it does not. raft's notifications can drop flips, so the state is
// also polled.
func (n *Node) leadershipLoop() {
	var (
		cancel context.CancelFunc
		done   chan struct{}
		term   uint64 // the term the running session was started in
	)
	stop := func() {
		if cancel != nil {
			n.gate.shut()
			cancel()
			<-done
			cancel, done = nil, nil
			n.metrics.LeaderChanges.Inc()
			n.logger.Info("leadership lost")
		}
	}
	defer stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-n.raft.LeaderCh():
		case <-tick.C:
		}
		leader := n.raft.IsLeader()
		if leader && cancel != nil && n.raft.Term() != term {
			// Leadership was lost and won again between two looks: the
			// session's state (lease grants, readiness) belongs to the
			// old term.
			stop()
		}
		switch {
		case leader && cancel == nil:
			term = n.raft.Term()
			n.metrics.LeaderChanges.Inc()
			now := time.Now()
			n.mu.Lock()
			n.mu.leaderSince = now
			n.mu.Unlock()
			n.leases.reset(now)
			n.logger.Info("leadership gained", "term", n.raft.Stats().Term)
			cancel, done = n.startLeaderSession(term)
		case !leader && cancel != nil:
			n.mu.Lock()
			n.mu.leaderSince = time.Time{}
			n.mu.Unlock()
			stop()
		}
	}
}

func (n *Node) startLeaderSession(term uint64) (context.CancelFunc, chan struct{}) {
	ctx, cancel := context.WithCancel(n.ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		n.leaderSession(ctx, term)
	}()
	return cancel, done
}

// leaderSession is everything the leader of term does while it leads: a
// barrier (so FSM state is current before acting on it; it opens n.ready),
// voter management, and the reconcile loop.
func (n *Node) leaderSession(ctx context.Context, term uint64) {
	for {
		bctx, cancel := context.WithTimeout(ctx, n.cfg.QuorumTimeout)
		err := n.raft.Barrier(bctx)
		cancel()
		if err == nil {
			n.gate.open(term)
			break
		}
		n.logger.Warn("barrier after election failed", "err", err)
		if !sleepCtx(ctx, 200*time.Millisecond) {
			return
		}
	}
	n.voters.Start(ctx)
	defer n.voters.Stop()
	// End every migration a previous leader left running (G7), before
	// placing or rebalancing; the loop below ends later ones.
	n.resumeMigrations(ctx)
	var bg sync.WaitGroup // the session's loops; they end with ctx
	defer bg.Wait()
	bg.Go(func() { every(ctx, n.cfg.ReconcileInterval, func() { n.resumeMigrations(ctx) }) })
	bg.Go(func() { n.runPlacer(ctx) })
	bg.Go(func() { n.runRebalancer(ctx) })

	absent := map[string]time.Time{}
	holds := failureHolds{}
	n.reconcile(ctx, absent, holds)
	tick := time.NewTicker(n.cfg.ReconcileInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.reconcileCh:
			if !n.gatherReconcileBatch(ctx) {
				return
			}
		case <-tick.C:
		}
		n.reconcile(ctx, absent, holds)
	}
}

// resumeMigrations ends the running migrations that this node's coordinator
// is not driving (migration.Coordinator.Resume). The leader runs it when its session starts and then every
// ReconcileInterval: the first pass cannot end everything, because a
// migration this node's own Migrate call was still driving then (begun in
// an earlier term of this node) is skipped, and if that call gives up
// afterwards (its commit failed while leadership was elsewhere), nobody
// would end the migration until the next leader change.
func (n *Node) resumeMigrations(ctx context.Context) {
	running, _ := n.fsm.Migrations()
	if len(running) == 0 {
		return
	}
	recs := make([]migration.Record, 0, len(running))
	for _, m := range running {
		recs = append(recs, recordOf(m))
	}
	if outs := n.coord.Resume(ctx, recs); len(outs) > 0 {
		n.logger.Info("ended migrations nobody was driving", "running", len(recs), "ended", len(outs))
	}
}

// gatherReconcileBatch lets changes that arrive together commit as one view
// change: after a gossip event it waits until no further event has come for
// ReconcileBatchDelay, but no longer than reconcileMaxBatch in all. A lone
// event (a crash) therefore commits after ReconcileBatchDelay as before,
// while a join storm, whose events never pause that long, commits one batch
// per reconcileMaxBatch instead of one per event. It reports false when ctx
// ends.
func (n *Node) gatherReconcileBatch(ctx context.Context) bool {
	quiet := n.cfg.ReconcileBatchDelay
	deadline := time.Now().Add(reconcileMaxBatch * quiet)
	t := time.NewTimer(quiet)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		case <-n.reconcileCh:
			left := time.Until(deadline)
			if left <= 0 {
				return true
			}
			t.Reset(min(quiet, left))
		}
	}
}

// reconcileMaxBatch bounds gatherReconcileBatch, in multiples of
// ReconcileBatchDelay (1 s with the default 100 ms): the longest a change
// waits behind a stream of others.
const reconcileMaxBatch = 10

// reconcile brings the committed view in line with gossip: one batch of
// status changes, then Raft configuration fixes for servers, then the
// activations those fixes allow. Every commit is one epoch; further rounds
// run only for what a commit or fix leaves to do (a joining server).
//
// failedAbsent is the leader session's memory of when each Failed member was
// first seen missing from gossip, holds of Failed verdicts held back
// (holdPaused).
func (n *Node) reconcile(ctx context.Context, failedAbsent map[string]time.Time, holds failureHolds) {
	for round := 0; round < 3 && ctx.Err() == nil; round++ {
		n.mu.Lock()
		started := n.mu.gossipStart
		n.mu.Unlock()
		if since := n.leaderSinceTime(); since.After(started) {
			started = since // missing members: count the grace from our own election
		}
		in := reconcileInput{
			View:    n.fsm.View(),
			Gossip:  n.gossip.Members(),
			InRaft:  map[string]bool{},
			Self:    n.cfg.NodeID,
			Now:     time.Now(),
			Started: started,
			Grace:   n.cfg.MissingMemberGrace,

			FailedAbsentSince: failedAbsent,
			ReapAfter:         n.cfg.Gossip.ReconnectTimeout,
		}
		trackFailedAbsent(failedAbsent, in)
		inConfig := map[string]bool{}
		if peers, err := n.raft.Configuration(); err == nil {
			for _, p := range peers {
				inConfig[p.ID] = true
			}
		}
		in.InRaft = n.caughtUpServers(ctx, in.View, inConfig)
		in2 := in
		in2.InRaft = inConfig
		changed := n.fixRaftMembership(ctx, in2)
		changes := n.holdPaused(ctx, in, planReconcile(in), holds)
		if len(changes) == 0 {
			if !changed {
				n.metrics.ReconcileRuns.WithLabelValues("in_sync").Inc()
				return
			}
			continue
		}
		_, err := n.commitLocal(ctx, consensus.ViewChange{Changes: changes, Reason: "reconcile"})
		switch {
		case err == nil:
			n.metrics.ReconcileRuns.WithLabelValues("committed").Inc()
			if !changed && !joinsServer(changes) {
				// Nothing committed needs a follow-up round; members that
				// appeared meanwhile have poked reconcileCh and commit
				// with the next batch rather than one epoch each.
				return
			}
		case errors.Is(err, consensus.ErrNoChange):
			n.metrics.ReconcileRuns.WithLabelValues("in_sync").Inc()
			return
		default:
			n.metrics.ReconcileRuns.WithLabelValues("error").Inc()
			n.logger.Warn("reconcile commit failed", "err", err, "changes", len(changes))
			return
		}
	}
}

// joinsServer reports whether cs commits a server Joining: the next round
// adds it to Raft and, once caught up, activates it.
func joinsServer(cs []consensus.Change) bool {
	for _, c := range cs {
		if c.Member.Role == consensus.RoleServer && c.Member.Status == consensus.StatusJoining {
			return true
		}
	}
	return false
}

// trackFailedAbsent updates the leader's memory of Failed members missing
// from gossip.
func trackFailedAbsent(m map[string]time.Time, in reconcileInput) {
	inGossip := make(map[string]bool, len(in.Gossip))
	for _, g := range in.Gossip {
		inGossip[g.Name] = true
	}
	for _, rec := range in.View.Members {
		if rec.Status == consensus.StatusFailed && !inGossip[rec.ID] {
			if _, ok := m[rec.ID]; !ok {
				m[rec.ID] = in.Now
			}
		} else {
			delete(m, rec.ID)
		}
	}
}

// caughtUpServers returns the servers of the Raft configuration that may be
// Active: this node, Active ones, and Joining ones that answer over
// (m)TLS with a log caught up with ours (same term, within MaxTrailingLogs).
// A server that cannot prove itself never becomes Active.
func (n *Node) caughtUpServers(ctx context.Context, v consensus.View, inConfig map[string]bool) map[string]bool {
	out := map[string]bool{}
	var probe []consensus.KnownServer
	for id := range inConfig {
		m, ok := v.Member(id)
		switch {
		case id == n.cfg.NodeID || (ok && m.Status != consensus.StatusJoining):
			out[id] = true
		case ok:
			probe = append(probe, consensus.KnownServer{ID: id, RaftAddr: m.RaftAddr})
		}
	}
	if len(probe) == 0 {
		return out
	}
	st := n.raft.Stats()
	for id, h := range n.FetchHealth(ctx, probe) {
		if h.LastTerm == st.Term && h.LastIndex+n.cfg.Voters.MaxTrailingLogs >= st.LastLogIndex {
			out[id] = true
		}
	}
	return out
}

// fixRaftMembership adds Joining/Active servers that are alive but missing
// from the Raft configuration (as non-voters; voter management promotes), once
// they answer over the node-to-node channel (under TLS: they hold a
// certificate of the cluster CA), and removes servers whose record is Left.
// It reports whether it changed anything.
func (n *Node) fixRaftMembership(ctx context.Context, in reconcileInput) bool {
	alive := map[string]gossip.Member{}
	for _, g := range in.Gossip {
		if g.Status == gossip.StatusAlive {
			alive[g.Name] = g
		}
	}
	changed := false
	for _, m := range in.View.Members {
		if m.Role != consensus.RoleServer || m.ID == in.Self {
			continue
		}
		switch {
		case (m.Status == consensus.StatusJoining || m.Status == consensus.StatusActive) && !in.InRaft[m.ID]:
			g, ok := alive[m.ID]
			if !ok || g.Tags.Boot != m.Boot || g.Tags.RaftAddr == "" {
				continue
			}
			if len(n.FetchHealth(ctx, []consensus.KnownServer{{ID: m.ID}})) == 0 {
				n.logger.Warn("not adding server to raft: it does not answer on the node-to-node channel (wrong certificate?)", "member", m.ID)
				continue
			}
			err := n.voters.AddServer(consensus.KnownServer{ID: m.ID, RaftAddr: g.Tags.RaftAddr, Version: m.Version, Status: "alive"})
			if err != nil {
				n.logger.Warn("add raft server failed", "member", m.ID, "err", err)
				continue
			}
			n.logger.Info("added server to raft as non-voter", "member", m.ID)
			changed = true
		case m.Status == consensus.StatusLeft && in.InRaft[m.ID]:
			if err := n.voters.RemoveServer(m.ID); err != nil {
				n.logger.Warn("remove raft server failed", "member", m.ID, "err", err)
				continue
			}
			n.logger.Info("removed left server from raft", "member", m.ID)
			changed = true
		}
	}
	return changed
}

func (n *Node) leaderSinceTime() time.Time {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.mu.leaderSince
}

// commitLocal commits a view change on this node, which must be the leader.
// It is quorum-gated: if gossip shows too few voters alive it fails at once;
// otherwise it waits at most QuorumTimeout for the commit. Failures are
// *NoQuorumError (nothing proposed), wrap ErrNotLeader, or wrap
// ErrUnknownOutcome (proposed, not seen committed); FSM rejections wrap the
// consensus sentinels.
func (n *Node) commitLocal(ctx context.Context, vc consensus.ViewChange) (*consensus.ApplyResult, error) {
	vc.ProposedAtUnixNano = time.Now().UnixNano()
	cmd, err := consensus.EncodeViewChange(vc)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidArgument, err)
	}
	res, err := n.applyGated(ctx, cmd)
	if err != nil {
		return nil, err
	}
	if res.Err != nil {
		return res, res.Err
	}
	n.metrics.ViewChangeCommits.WithLabelValues(vc.Reason).Inc()
	now := time.Now()
	for _, c := range vc.Changes {
		if c.Member.Status == consensus.StatusFailed {
			n.metrics.ObserveFailedCommit(c.Member.ID, now)
		} else if c.Member.Status == consensus.StatusJoining {
			n.metrics.ClearFailureSignal(c.Member.ID)
		}
	}
	n.logger.Info("view change committed", "epoch", res.Epoch, "index", res.Index, "reason", vc.Reason, "changes", describeChanges(vc.Changes))
	return res, nil
}

// applyGated commits an encoded command on this node, which must be the
// leader (G2 QuorumGated). If gossip shows too few voters alive it fails at
// once with *NoQuorumError: nothing was proposed. Otherwise it waits at most
// QuorumTimeout for the commit. Once the entry is in the leader's log, a
// failure to see it commit (the time ran out, leadership was lost) wraps
// ErrUnknownOutcome, never ErrNoQuorum: the entry may still be committed by
// this or the next leader, so the caller must not treat it as refused.
func (n *Node) applyGated(ctx context.Context, cmd []byte) (*consensus.ApplyResult, error) {
	if n.raft == nil || !n.raft.IsLeader() {
		return nil, ErrNotLeader
	}
	reach, total := n.reachableVoters()
	if !HasQuorum(reach, total) {
		return nil, &NoQuorumError{Reachable: reach, Total: total}
	}
	cctx, cancel := context.WithTimeout(ctx, n.cfg.QuorumTimeout)
	defer cancel()
	res, err := n.raft.Apply(cctx, cmd)
	if err != nil {
		switch {
		case errors.Is(err, consensus.ErrNotLeader):
			// Refused before it was appended.
			return nil, fmt.Errorf("%w: %v", ErrNotLeader, err)
		case errors.Is(err, consensus.ErrNotEnqueued):
			// Raft never took it.
			reach, total = n.reachableVoters()
			return nil, &NoQuorumError{Reachable: reach, Total: total, Cause: err}
		case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled),
			errors.Is(err, consensus.ErrLeadershipLost), errors.Is(err, consensus.ErrShutdown):
			reach, total = n.reachableVoters()
			return nil, fmt.Errorf("%w: not seen committed (%d of %d voters reachable): %v", ErrUnknownOutcome, reach, total, err)
		}
		return nil, err
	}
	return res, nil
}

func describeChanges(cs []consensus.Change) []string {
	out := make([]string, 0, len(cs))
	for _, c := range cs {
		out = append(out, c.Member.ID+"→"+c.Member.Status.String())
	}
	return out
}

// reachableVoters counts the voters of the Raft configuration that gossip
// shows alive (this node counts if it is a voter), and the total voters.
func (n *Node) reachableVoters() (reachable, total int) {
	if n.raft == nil {
		return 0, 0
	}
	peers, err := n.raft.Configuration()
	if err != nil {
		return 0, 0
	}
	for _, p := range peers {
		if !p.Voter {
			continue
		}
		total++
		if p.ID == n.cfg.NodeID {
			reachable++
			continue
		}
		if m, ok := n.gossip.Member(p.ID); ok && m.Status == gossip.StatusAlive {
			reachable++
		}
	}
	return reachable, total
}

// --- consensus.VoterDelegate ---

// KnownServers lists servers from gossip, with the committed view's verdict
// for those gossip no longer knows.
func (n *Node) KnownServers() []consensus.KnownServer {
	var out []consensus.KnownServer
	seen := map[string]bool{}
	for _, g := range n.gossip.Members() {
		if !g.IsServer() {
			continue
		}
		seen[g.Name] = true
		st := "unknown"
		switch g.Status {
		case gossip.StatusAlive:
			st = "alive"
		case gossip.StatusFailed:
			st = "failed"
		case gossip.StatusLeft:
			st = "left"
		}
		if rec, ok := n.fsm.View().Member(g.Name); ok && rec.Status == consensus.StatusLeft && rec.Boot == g.Tags.Boot {
			st = "left"
		}
		out = append(out, consensus.KnownServer{ID: g.Name, RaftAddr: g.Tags.RaftAddr, Version: g.Tags.Version, Status: st})
	}
	for _, m := range n.fsm.View().Members {
		if m.Role != consensus.RoleServer || seen[m.ID] {
			continue
		}
		st := "failed"
		if m.Status == consensus.StatusLeft {
			st = "left"
		}
		out = append(out, consensus.KnownServer{ID: m.ID, RaftAddr: m.RaftAddr, Version: m.Version, Status: st})
	}
	return out
}

// FetchHealth asks each server's HTTP API for its Raft health, in parallel.
func (n *Node) FetchHealth(ctx context.Context, servers []consensus.KnownServer) map[string]consensus.RaftHealth {
	out := map[string]consensus.RaftHealth{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, s := range servers {
		g, ok := n.gossip.Member(s.ID)
		if !ok || g.Tags.HTTPAddr == "" {
			continue
		}
		wg.Add(1)
		go func(id, addr string) {
			defer wg.Done()
			c, err := n.peerClient(addr)
			if err != nil {
				return
			}
			cctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			h, err := c.raftHealth(cctx)
			if err != nil {
				return
			}
			mu.Lock()
			out[id] = h
			mu.Unlock()
		}(s.ID, g.Tags.HTTPAddr)
	}
	wg.Wait()
	return out
}

// RemoveFailed removes a failed server from Raft once voter management says
// it is safe. It must not block.
func (n *Node) RemoveFailed(id string) {
	go func() {
		ctx, cancel := context.WithTimeout(n.ctx, n.cfg.QuorumTimeout)
		defer cancel()
		if err := n.raft.RemoveServer(ctx, id); err != nil {
			n.logger.Warn("remove failed server from raft", "member", id, "err", err)
			return
		}
		n.logger.Info("removed failed server from raft", "member", id)
	}()
}

// --- metrics.Source ---

// MetricsIsLeader implements metrics.Source.
func (n *Node) MetricsIsLeader() bool { return n.raft != nil && n.raft.IsLeader() }

// MetricsRaft implements metrics.Source.
func (n *Node) MetricsRaft() (term, commit, applied uint64, ok bool) {
	if n.raft == nil {
		return 0, 0, 0, false
	}
	s := n.raft.Stats()
	return s.Term, s.CommitIndex, s.AppliedIndex, true
}

// MetricsLeaseRemaining implements metrics.Source.
func (n *Node) MetricsLeaseRemaining() time.Duration { return n.LeaseRemaining() }

// MetricsGossipDropped implements metrics.Source.
func (n *Node) MetricsGossipDropped() uint64 {
	if n.gossip == nil {
		return 0
	}
	return n.gossip.DroppedEvents()
}
