package nemesis

import (
	"fmt"
	"sort"
)

// CheckJoinIsReal (G10, JoinIsReal, JoinAtomicity, LeaveDetection):
//
//   - A graceful leave drains first: the leaving process hosts no actor
//     when it exits, and, when nothing else was failing, each actor it
//     hosted moved by migration (its next token continues its state) rather
//     than being dropped and placed afresh.
//   - A graceful leave made while the network and the other nodes were
//     healthy ends Left in the committed view (seen by another node before
//     the node comes back), never Failed.
//   - A restarted node rejoins: it is seen Active again with a higher
//     incarnation than before it went down.
func CheckJoinIsReal(h *History) Result {
	var r Result
	pw := procWindows(h)
	spans := netTimeline(h)
	segs := Segments(h)
	ts := BuildTokens(h)
	// Drained before exit.
	for _, s := range segs {
		if s.EndReason != "dead" {
			continue
		}
		for _, e := range h.Nemesis {
			if e.Kind == EvExit && e.Node == s.Node && e.Time == s.End {
				r.violate(fmt.Sprintf("%s left gracefully while still hosting %s (token %d)", s.Node, s.Actor, s.Token), nil, s.String(), e.String())
			}
		}
	}
	// Left, not Failed.
	evs := append([]NemesisEvent(nil), h.Nemesis...)
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].Time < evs[j].Time })
	leaves, rejoins := 0, 0
	for i, e := range evs {
		if e.Kind != EvExit {
			continue
		}
		var begin int64
		for j := i - 1; j >= 0; j-- {
			if evs[j].Node == e.Node && evs[j].Kind == EvLeaveBegin {
				begin = evs[j].Time
				break
			}
		}
		next := nextStart(evs, i, e.Node)
		if begin == 0 || anyFaultExcept(h, pw, spans, e.Node, begin, e.Time) {
			continue
		}
		leaves++
		checkDrained(&r, h, ts, segs, e.Node, begin, e.Time)
		var status string
		var seen ViewObs
		for _, v := range h.Views {
			if v.Node == e.Node || v.Time <= e.Time || v.Time >= next {
				continue
			}
			if m, ok := v.Member(e.Node); ok && (m.Status == "left" || m.Status == "failed") && (seen.Time == 0 || v.Time < seen.Time) {
				status, seen = m.Status, v
			}
		}
		switch status {
		case "":
			r.violate(fmt.Sprintf("%s left gracefully at %d but no other node saw it Left before it came back", e.Node, e.Time), nil)
		case "failed":
			r.violate(fmt.Sprintf("%s left gracefully at %d but was committed Failed, not Left", e.Node, e.Time), nil,
				fmt.Sprintf("view of %s at %d: %s", seen.Node, seen.Time, membersKey(seen.Members)))
		}
	}
	// Rejoin after every restart.
	for i, e := range evs {
		if e.Kind != EvStart {
			continue
		}
		restart := false
		for _, p := range evs[:i] {
			if p.Node == e.Node && p.Kind == EvStart {
				restart = true
			}
		}
		if !restart {
			continue
		}
		rejoins++
		var before uint64
		for _, v := range h.Views {
			if v.Time < e.Time {
				if m, ok := v.Member(e.Node); ok && m.Incarnation > before {
					before = m.Incarnation
				}
			}
		}
		back := false
		for _, v := range h.Views {
			if v.Time > e.Time {
				if m, ok := v.Member(e.Node); ok && m.Status == "active" && m.Incarnation > before {
					back = true
					break
				}
			}
		}
		if !back && h.Final != nil {
			if m, ok := h.Final.View.Member(e.Node); ok && m.Status == "active" && m.Incarnation > before {
				back = true
			}
		}
		if !back {
			r.violate(fmt.Sprintf("%s restarted at %d but was never seen Active with an incarnation above %d", e.Node, e.Time, before), nil)
		}
	}
	r.note("%d graceful leaves, %d restarts", leaves, rejoins)
	return r
}

func nextStart(evs []NemesisEvent, i int, node string) int64 {
	for _, e := range evs[i+1:] {
		if e.Node == node && e.Kind == EvStart {
			return e.Time
		}
	}
	return forever
}

// anyFaultExcept reports a fault of any node but node, or any network
// fault, in [from, to].
func anyFaultExcept(h *History, pw map[string][]Window, spans []netSpan, node string, from, to int64) bool {
	for _, s := range spans {
		if s.Overlaps(from, to) && !s.State.Empty() {
			return true
		}
	}
	for _, n := range h.Meta.Nodes {
		if n.Name == node {
			continue
		}
		for _, w := range faultWindows(pw, n.Name) {
			if w.Overlaps(from, to) {
				return true
			}
		}
	}
	return false
}

// checkDrained: every actor node hosted when its graceful leave began was
// handed over by migration: the actor's next token continues the lineage.
func checkDrained(r *Result, h *History, ts *Tokens, segs []Segment, node string, begin, exit int64) {
	for _, s := range segs {
		if s.Node != node || s.Start > begin || s.End < begin || s.End > exit {
			continue
		}
		for _, t := range ts.Sorted(s.Actor) {
			if t <= s.Token {
				continue
			}
			if ts.Root(s.Actor, t) == t {
				ti, _ := ts.Info(s.Actor, t)
				r.violate(fmt.Sprintf("%s's graceful leave dropped %s (token %d, value %d) instead of migrating it: it came back empty with token %d on %s",
					node, s.Actor, s.Token, deactValue(s), t, ti.Node), nil, s.String())
			}
			break
		}
	}
}

func deactValue(s Segment) int64 {
	if s.Deact != nil {
		return s.Deact.Value
	}
	return s.StartValue
}
