package cluster

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/kelpie/cluster/consensus"
	"github.com/kelpie/cluster/gossip"
)

// failureHolds is a leader session's memory of the Failed verdicts it is
// holding back: member → when gossip's failure was first held.
type failureHolds map[string]time.Time

// failureProbeTimeout bounds one connection attempt of holdPaused: on a LAN
// an accepting host answers a SYN in well under a millisecond, so an answer
// this late means the member is cut off.
const failureProbeTimeout = 500 * time.Millisecond

// holdPaused tells a paused process from a dead one before a Failed verdict
// commits (Config.FailureHold). Gossip declares a member failed when it stops
// answering probes; a process stopped by SIGSTOP, a long GC pause or a starved
// scheduler looks exactly like a crashed one to gossip, but its host kernel
// still completes TCP handshakes on its listening sockets. So for every
// member gossip reports failed whose verdict is in changes, the leader dials
// the member's HTTP address: refused or no answer within failureProbeTimeout
// (crash, dead host, partition) lets the verdict commit now; accepted holds
// it back — every change for that member leaves this batch — until
// FailureHold has passed since the hold began, after which it commits
// whatever the probe says. A member that recovers meanwhile is alive again in
// gossip and no verdict is planned at all.
func (n *Node) holdPaused(ctx context.Context, in reconcileInput, changes []consensus.Change, holds failureHolds) []consensus.Change {
	failed := map[string]gossip.Member{}
	for _, g := range in.Gossip {
		if g.Status == gossip.StatusFailed {
			failed[g.Name] = g
		}
	}
	for id := range holds {
		if _, ok := failed[id]; !ok {
			delete(holds, id) // recovered, reaped or committed
		}
	}
	if n.cfg.FailureHold <= 0 {
		return changes
	}
	// Members whose Failed verdict is planned now because gossip says so.
	var probe []gossip.Member
	seen := map[string]bool{}
	fresh := map[string]bool{} // holds that begin in this pass
	for _, c := range changes {
		g, ok := failed[c.Member.ID]
		if !ok || c.Member.Status != consensus.StatusFailed || seen[g.Name] || g.Tags.HTTPAddr == "" {
			continue
		}
		seen[g.Name] = true
		first, held := holds[g.Name]
		if !held {
			first, fresh[g.Name] = in.Now, true
		}
		if in.Now.Sub(first) >= n.cfg.FailureHold {
			continue // held long enough: commit
		}
		holds[g.Name] = first
		probe = append(probe, g)
	}
	if len(probe) == 0 {
		return changes
	}
	accepting := n.acceptingMembers(ctx, probe)
	if len(accepting) == 0 {
		for _, g := range probe {
			delete(holds, g.Name)
		}
		return changes
	}
	out := changes[:0:0]
	for _, c := range changes {
		if !accepting[c.Member.ID] {
			out = append(out, c)
		}
	}
	for _, g := range probe {
		if !accepting[g.Name] {
			delete(holds, g.Name)
			continue
		}
		if !fresh[g.Name] {
			continue // logged, and its end armed, when the hold began
		}
		n.logger.Info("gossip reports member failed but its process accepts connections: holding the verdict",
			"member", g.Name, "hold", n.cfg.FailureHold)
		// Make sure a reconcile runs when the hold ends, not a tick later.
		time.AfterFunc(n.cfg.FailureHold, n.pokeReconcile)
	}
	n.metrics.ReconcileRuns.WithLabelValues("held").Inc()
	return out
}

// acceptingMembers dials every member's HTTP address at once and returns
// those that accepted the connection within failureProbeTimeout.
func (n *Node) acceptingMembers(ctx context.Context, ms []gossip.Member) map[string]bool {
	ctx, cancel := context.WithTimeout(ctx, failureProbeTimeout)
	defer cancel()
	var (
		mu  sync.Mutex
		wg  sync.WaitGroup
		out = map[string]bool{}
	)
	for _, g := range ms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := n.dialer.DialContext(ctx, "tcp", g.Tags.HTTPAddr)
			if err != nil {
				var op *net.OpError
				if !errors.As(err, &op) && ctx.Err() == nil {
					n.logger.Debug("failure probe", "member", g.Name, "err", err)
				}
				return
			}
			c.Close()
			mu.Lock()
			out[g.Name] = true
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}
