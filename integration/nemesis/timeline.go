package nemesis

import (
	"math"
	"sort"
)

// forever stands for "until the end of the run".
const forever = int64(math.MaxInt64)

// Window is a time interval [From, To] of CLOCK_MONOTONIC nanoseconds.
type Window struct {
	From, To int64
	Kind     string // dead, stopped, leaving
}

// Overlaps reports whether w and [from, to] share an instant.
func (w Window) Overlaps(from, to int64) bool { return w.From <= to && w.To >= from }

// Contains reports whether t is in w.
func (w Window) Contains(t int64) bool { return w.From <= t && t <= w.To }

// procWindows returns, per node, when its process could not act: dead
// (from a kill or a graceful exit to the next start), stopped (from SIGSTOP
// to SIGCONT) and, separately, leaving (from SIGTERM to exit).
func procWindows(h *History) map[string][]Window {
	out := map[string][]Window{}
	open := map[string]*Window{}
	evs := append([]NemesisEvent(nil), h.Nemesis...)
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].Time < evs[j].Time })
	closeOpen := func(node string, t int64) {
		if w := open[node]; w != nil {
			w.To = t
			out[node] = append(out[node], *w)
			delete(open, node)
		}
	}
	for _, e := range evs {
		switch e.Kind {
		case EvKill, EvExit:
			closeOpen(e.Node, e.Time) // a stopped or leaving process ends here
			open[e.Node] = &Window{From: e.Time, Kind: "dead"}
		case EvStop:
			closeOpen(e.Node, e.Time)
			open[e.Node] = &Window{From: e.Time, Kind: "stopped"}
		case EvLeaveBegin:
			closeOpen(e.Node, e.Time)
			open[e.Node] = &Window{From: e.Time, Kind: "leaving"}
		case EvCont:
			if w := open[e.Node]; w != nil && w.Kind == "stopped" {
				closeOpen(e.Node, e.Time)
			}
		case EvStart:
			closeOpen(e.Node, e.Time)
		}
	}
	for node, w := range open {
		w.To = forever
		out[node] = append(out[node], *w)
	}
	return out
}

// faultWindows returns the windows in which node could not act (dead or
// stopped; leaving is not a fault).
func faultWindows(pw map[string][]Window, node string) []Window {
	var out []Window
	for _, w := range pw[node] {
		if w.Kind == "dead" || w.Kind == "stopped" {
			out = append(out, w)
		}
	}
	return out
}

// netSpan is a network state and the time it was in force.
type netSpan struct {
	Window
	State NetState
}

// netTimeline returns the network states in time order, from the start of
// time (healed) to forever.
func netTimeline(h *History) []netSpan {
	var evs []NemesisEvent
	for _, e := range h.Nemesis {
		if e.Kind == EvNet && e.Net != nil {
			evs = append(evs, e)
		}
	}
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].Time < evs[j].Time })
	spans := []netSpan{{Window: Window{From: math.MinInt64, To: forever}}}
	for _, e := range evs {
		spans[len(spans)-1].To = e.Time
		spans = append(spans, netSpan{Window: Window{From: e.Time, To: forever}, State: *e.Net})
	}
	return spans
}

// netFaultOn reports whether a network fault involving node (a cut at
// either end, or loss) was in force at some instant of [from, to].
func netFaultOn(spans []netSpan, node string, from, to int64) bool {
	for _, s := range spans {
		if s.Overlaps(from, to) && s.State.Involves(node) {
			return true
		}
	}
	return false
}

// faultOn reports whether node had a process or network fault at some
// instant of [from, to].
func faultOn(pw map[string][]Window, spans []netSpan, node string, from, to int64) bool {
	for _, w := range faultWindows(pw, node) {
		if w.Overlaps(from, to) {
			return true
		}
	}
	return netFaultOn(spans, node, from, to)
}

// anyFault reports whether any node had a process or network fault in
// [from, to].
func anyFault(h *History, pw map[string][]Window, spans []netSpan, from, to int64) bool {
	for _, n := range h.Meta.Nodes {
		if faultOn(pw, spans, n.Name, from, to) {
			return true
		}
	}
	for _, s := range spans {
		if s.Overlaps(from, to) && !s.State.Empty() {
			return true
		}
	}
	return false
}

// reachableVoters counts the voters node can exchange packets with both
// ways under s (itself included), ignoring process faults.
func reachableVoters(s NetState, node string, voters []string) int {
	n := 0
	for _, v := range voters {
		if v == node || (!s.Cut(node, v) && !s.Cut(v, node)) {
			n++
		}
	}
	return n
}

// minorityThroughout reports whether, at every instant of [from, to], node
// was cut off from a majority of the voters, even through other nodes
// (requests are forwarded, so a node reaching a bridge reaches what the
// bridge reaches): counting the voters in node's connected component of the
// graph of links open both ways between nodes that are up. Then nothing
// sent through node could have been committed.
func minorityThroughout(h *History, pw map[string][]Window, spans []netSpan, node string, from, to int64) bool {
	voters := h.Servers()
	if len(voters) == 0 {
		return false
	}
	var nodes []string
	for _, n := range h.Meta.Nodes {
		nodes = append(nodes, n.Name)
	}
	// Every instant where something changes, plus the start.
	points := []int64{from}
	for _, s := range spans {
		if s.From > from && s.From <= to {
			points = append(points, s.From)
		}
	}
	for _, n := range nodes {
		for _, w := range faultWindows(pw, n) {
			if w.From > from && w.From <= to {
				points = append(points, w.From)
			}
			if w.To > from && w.To <= to {
				points = append(points, w.To)
			}
		}
	}
	sort.Slice(points, func(i, j int) bool { return points[i] < points[j] })
	isVoter := map[string]bool{}
	for _, v := range voters {
		isVoter[v] = true
	}
	for _, p := range points {
		var st NetState
		for _, s := range spans {
			if s.Contains(p) {
				st = s.State // the later span wins at a boundary
			}
		}
		up := func(n string) bool {
			for _, w := range faultWindows(pw, n) {
				// At a boundary a node counts as up (the weaker claim).
				if w.From < p && p < w.To {
					return false
				}
			}
			return true
		}
		seen := map[string]bool{node: true}
		queue := []string{node}
		reach := 0
		for len(queue) > 0 {
			a := queue[0]
			queue = queue[1:]
			if isVoter[a] && up(a) {
				reach++
			}
			for _, b := range nodes {
				if seen[b] || !up(b) || st.Cut(a, b) || st.Cut(b, a) {
					continue
				}
				seen[b] = true
				queue = append(queue, b)
			}
		}
		if 2*reach > len(voters) {
			return false
		}
	}
	return true
}
