package nemesis

import (
	"fmt"
	"sort"
)

// CheckMonotonicEpoch (G3, MonotonicEpoch and "terms only grow"): what a
// node serves never goes back in time, also across its restarts: its view
// epoch (in status answers given while ready, and in view answers) and, on
// servers, its Raft term. An answer is compared with every answer of the
// same node received before it was asked for.
func CheckMonotonicEpoch(h *History) Result {
	var r Result
	servers := map[string]bool{}
	for _, s := range h.Servers() {
		servers[s] = true
	}
	byNode := map[string][]mono{}
	for _, s := range h.Statuses {
		desc := fmt.Sprintf("status of %s at %d: term %d epoch %d ready=%v", s.Node, s.Time, s.Term, s.Epoch, s.Ready)
		var epoch, term uint64
		if s.Ready {
			epoch = s.Epoch
		}
		if servers[s.Node] {
			term = s.Term
		}
		byNode[s.Node] = append(byNode[s.Node], mono{sent: s.Sent, time: s.Time, epoch: epoch, term: term, desc: desc})
	}
	for _, v := range h.Views {
		sent := v.Sent
		if sent == 0 {
			sent = v.Time
		}
		byNode[v.Node] = append(byNode[v.Node], mono{sent: sent, time: v.Time, epoch: v.Epoch,
			desc: fmt.Sprintf("view of %s at %d: epoch %d index %d", v.Node, v.Time, v.Epoch, v.Index)})
	}
	var nodes []string
	for n := range byNode {
		nodes = append(nodes, n)
	}
	sort.Strings(nodes)
	n := 0
	for _, node := range nodes {
		obs := byNode[node]
		n += len(obs)
		checkMonotone(&r, node, "epoch", obs, func(m mono) uint64 { return m.epoch })
		checkMonotone(&r, node, "term", obs, func(m mono) uint64 { return m.term })
	}
	r.note("%d status and view answers from %d nodes", n, len(nodes))
	return r
}

// mono is one answer of a node: asked at sent, received at time.
type mono struct {
	sent, time  int64
	epoch, term uint64
	desc        string
}

// checkMonotone reports answers whose value (0 = not applicable) is below
// the highest value of an answer received before they were asked for.
func checkMonotone(r *Result, node, what string, obs []mono, val func(mono) uint64) {
	byTime := append([]mono(nil), obs...)
	sort.SliceStable(byTime, func(i, j int) bool { return byTime[i].time < byTime[j].time })
	// best[i]: the answer with the highest value among byTime[:i+1].
	best := make([]int, len(byTime))
	for i := range byTime {
		best[i] = i
		if i > 0 && val(byTime[best[i-1]]) >= val(byTime[i]) {
			best[i] = best[i-1]
		}
	}
	reported := 0
	for _, o := range obs {
		v := val(o)
		if v == 0 {
			continue
		}
		k := sort.Search(len(byTime), func(i int) bool { return byTime[i].time >= o.sent })
		if k == 0 {
			continue
		}
		b := byTime[best[k-1]]
		if val(b) > v {
			if reported < 3 {
				r.violate(fmt.Sprintf("%s's %s went back from %d to %d", node, what, val(b), v), nil, "before: "+b.desc, "after: "+o.desc)
			}
			reported++
		}
	}
}
