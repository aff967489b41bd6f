package cluster

import (
	"context"
	"sort"
	"time"

	"github.com/kelpie/cluster/placement"
)

// RebalanceConfig controls the leader's rebalancer. It is off by default:
// moving actors costs a state transfer and a short unavailability per actor,
// so an operator should opt in (or drain explicitly).
type RebalanceConfig struct {
	// Enabled turns rebalancing on.
	Enabled bool
	// Interval between rounds. Default 30s.
	Interval time.Duration
	// Ratio: a round runs only when the most loaded eligible node hosts more
	// than Ratio × the average. Default 1.25.
	Ratio float64
	// MaxPerRound bounds the migrations started per round (no storms).
	// Default 8.
	MaxPerRound int
}

// DefaultRebalanceConfig returns the defaults described on RebalanceConfig.
func DefaultRebalanceConfig() RebalanceConfig {
	return RebalanceConfig{Interval: 30 * time.Second, Ratio: 1.25, MaxPerRound: 8}
}

// move is one planned migration.
type move struct{ actor, from, to string }

// planRebalance picks at most max moves, each from the currently most loaded
// node to the least loaded one, while the most loaded exceeds ratio × the
// average and moving one actor still narrows the gap. Pure: the caller
// passes loads and each node's movable actors (sorted).
func planRebalance(loads map[string]int, movable map[string][]string, ratio float64, max int) []move {
	if len(loads) < 2 || max <= 0 {
		return nil
	}
	l := make(map[string]int, len(loads))
	total := 0
	for n, c := range loads {
		l[n] = c
		total += c
	}
	avg := float64(total) / float64(len(l))
	next := make(map[string]int, len(movable))
	var out []move
	for len(out) < max {
		var hi, lo string
		for _, n := range sortedNodeIDs(l) {
			if hi == "" || l[n] > l[hi] {
				hi = n
			}
			if lo == "" || l[n] < l[lo] {
				lo = n
			}
		}
		if float64(l[hi]) <= ratio*avg || l[hi]-l[lo] < 2 || next[hi] >= len(movable[hi]) {
			break
		}
		out = append(out, move{actor: movable[hi][next[hi]], from: hi, to: lo})
		next[hi]++
		l[hi]--
		l[lo]++
	}
	return out
}

func sortedNodeIDs(m map[string]int) []string {
	ids := make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// runRebalancer runs on the leader while it leads.
func (n *Node) runRebalancer(ctx context.Context) {
	rc := n.cfg.Rebalance
	if !rc.Enabled {
		return
	}
	every(ctx, rc.Interval, func() { n.rebalanceOnce(ctx) })
}

// rebalanceOnce plans one round over the eligible nodes and runs it.
func (n *Node) rebalanceOnce(ctx context.Context) int {
	rc := n.cfg.Rebalance
	nodes := n.placementNodes(n.fsm.View())
	loads := map[string]int{}
	movable := map[string][]string{}
	for _, nd := range nodes {
		if !nd.Active {
			continue
		}
		ps, _ := n.fsm.PlacementsByNode(nd.ID)
		loads[nd.ID] = len(ps)
		for _, p := range ps {
			if p.State == placement.StateActive {
				movable[nd.ID] = append(movable[nd.ID], p.Actor)
			}
		}
	}
	moves := planRebalance(loads, movable, rc.Ratio, rc.MaxPerRound)
	done := 0
	for _, m := range moves {
		out, err := n.coord.Migrate(ctx, m.actor, m.to)
		if err == nil && out.State == "committed" {
			done++
		}
	}
	if len(moves) > 0 {
		n.logger.Info("rebalance round", "planned", len(moves), "committed", done)
	}
	return done
}
