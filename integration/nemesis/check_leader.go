package nemesis

import (
	"fmt"
	"sort"
)

// CheckNoSplitBrain (G1, NoSplitBrain): at most one node claims leadership
// in any term. Every status answer with is_leader=true is a claim for its
// term; two nodes claiming the same term is a split brain.
func CheckNoSplitBrain(h *History) Result {
	var r Result
	type claim struct {
		first StatusObs
		n     int
	}
	claims := map[uint64]map[string]*claim{}
	for _, s := range h.Statuses {
		if !s.IsLeader {
			continue
		}
		m := claims[s.Term]
		if m == nil {
			m = map[string]*claim{}
			claims[s.Term] = m
		}
		if c := m[s.Node]; c != nil {
			c.n++
		} else {
			m[s.Node] = &claim{first: s, n: 1}
		}
	}
	var terms []uint64
	for t := range claims {
		terms = append(terms, t)
	}
	sort.Slice(terms, func(i, j int) bool { return terms[i] < terms[j] })
	for _, t := range terms {
		m := claims[t]
		if len(m) <= 1 {
			continue
		}
		var ev []string
		var nodes []string
		for node, c := range m {
			nodes = append(nodes, node)
			ev = append(ev, fmt.Sprintf("%s said is_leader=true at term %d %d time(s), first at %d", node, t, c.n, c.first.Time))
		}
		sort.Strings(nodes)
		sort.Strings(ev)
		r.violate(fmt.Sprintf("term %d has %d leaders: %v", t, len(m), nodes), nil, ev...)
	}
	r.note("%d leader claims over %d terms", countClaims(claims), len(terms))
	return r
}

func countClaims[T any](m map[uint64]map[string]T) int {
	n := 0
	for _, v := range m {
		n += len(v)
	}
	return n
}
