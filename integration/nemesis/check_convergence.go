package nemesis

import (
	"fmt"
	"sort"
	"time"
)

// ConvergenceBound is how long after healing every live node must agree
// (G9): failure detection and rejoin take a few seconds each with the
// default profile, so this leaves a wide margin.
const ConvergenceBound = 60 * time.Second

// CheckConvergence (G9, Convergence and EventualConvergence): after the
// faults stop, every live node serves the leader's view (same epoch and
// index, everyone Active) within ConvergenceBound, and every server's
// placement table is the leader's.
func CheckConvergence(h *History) Result {
	var r Result
	f := h.Final
	if f == nil {
		r.violate("the run recorded no final state (it did not get to heal)", nil)
		return r
	}
	if !f.Converged {
		r.violate(fmt.Sprintf("live nodes did not converge within %s of healing", ConvergenceBound), nil, "last state: "+f.Detail)
		return r
	}
	took := time.Duration(f.ConvergedAt - f.HealedAt)
	if took > ConvergenceBound {
		r.violate(fmt.Sprintf("live nodes converged %s after healing (bound %s)", took.Round(time.Millisecond), ConvergenceBound), nil, f.Detail)
	}
	for _, n := range f.Live {
		if m, ok := f.View.Member(n); !ok || m.Status != "active" {
			r.violate(fmt.Sprintf("%s is live but not Active in the leader's final view", n), nil, membersKey(f.View.Members))
		}
	}
	lead := f.Placements[f.Leader]
	var servers []string
	for s := range f.Placements {
		servers = append(servers, s)
	}
	sort.Strings(servers)
	for _, s := range servers {
		if s == f.Leader {
			continue
		}
		if d := diffPlacements(lead, f.Placements[s]); d != "" {
			r.violate(fmt.Sprintf("%s's final placement table differs from the leader's (%s)", s, f.Leader), nil, d)
		}
	}
	r.note("converged %s after healing; %d placements", took.Round(time.Millisecond), len(lead))
	return r
}

func diffPlacements(a, b []PlacementBrief) string {
	am := map[string]PlacementBrief{}
	for _, p := range a {
		am[p.Actor] = p
	}
	bm := map[string]PlacementBrief{}
	for _, p := range b {
		bm[p.Actor] = p
	}
	var diffs []string
	for k, p := range am {
		if q, ok := bm[k]; !ok || q != p {
			diffs = append(diffs, fmt.Sprintf("%s: leader %+v, other %+v", k, p, q))
		}
	}
	for k, q := range bm {
		if _, ok := am[k]; !ok {
			diffs = append(diffs, fmt.Sprintf("%s: leader none, other %+v", k, q))
		}
	}
	sort.Strings(diffs)
	if len(diffs) > 5 {
		diffs = append(diffs[:5], fmt.Sprintf("… %d more", len(diffs)-5))
	}
	if len(diffs) == 0 {
		return ""
	}
	return fmt.Sprint(diffs)
}
