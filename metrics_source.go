package cluster

import (
	"time"

	"github.com/kelpie/cluster/metrics"
)

// The rest of metrics.Source (the first four methods are in leader.go). Each
// is read at scrape time and touches only local state.

// MetricsLease implements metrics.Source.
func (n *Node) MetricsLease() metrics.Lease {
	return metrics.Lease{
		Duration:      n.cfg.Lease.Duration,
		Margin:        n.cfg.Lease.Margin,
		RenewInterval: n.cfg.Lease.RenewInterval(),
		Fenced:        n.Fenced(),
	}
}

// MetricsGossipMembers implements metrics.Source.
func (n *Node) MetricsGossipMembers() map[string]int {
	out := map[string]int{}
	if n.gossip == nil {
		return out
	}
	for _, m := range n.gossip.Members() {
		out[m.Status.String()]++
	}
	return out
}

// MetricsVoters implements metrics.Source. Health comes from voter
// management, which runs on the leader only.
func (n *Node) MetricsVoters() (metrics.Voters, bool) {
	if n.raft == nil {
		return metrics.Voters{}, false
	}
	v := metrics.Voters{Target: n.cfg.Voters.Voters}
	v.Reachable, v.Total = n.reachableVoters()
	if n.voters != nil && n.raft.IsLeader() {
		if st := n.voters.State(); st != nil {
			v.HealthKnown = true
			for _, s := range st.Servers {
				if (s.Suffrage == "voter" || s.Suffrage == "leader") && s.Healthy {
					v.Healthy++
				}
			}
		}
	}
	return v, true
}

// MetricsPlacements implements metrics.Source: servers count the committed
// placements of every node in their replica's view; clients hold no full
// replica.
func (n *Node) MetricsPlacements() (map[string]int, bool) {
	if n.fsm == nil {
		return nil, false
	}
	v := n.fsm.View()
	ids := make([]string, 0, len(v.Members))
	for _, m := range v.Members {
		ids = append(ids, m.ID)
	}
	return n.fsm.PlacementLoads(ids), true
}

// MetricsLocalActors implements metrics.Source.
func (n *Node) MetricsLocalActors() int { return len(n.actors.active()) }

// MetricsLastLeaseGrant implements metrics.Source.
func (n *Node) MetricsLastLeaseGrant(member string) (time.Time, bool) {
	g, _ := n.leases.get(member, 0)
	return g, !g.IsZero()
}
