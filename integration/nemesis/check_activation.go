package nemesis

import (
	"fmt"
	"sort"
)

// CheckSingleActivation (G4, SingleActivation and fencing tokens): at no
// instant do two nodes host one actor, judged on the real CLOCK_MONOTONIC
// timestamps of the activation logs (see Segments for when an activation
// ends); and a fencing token is activated on one node only.
func CheckSingleActivation(h *History) Result {
	var r Result
	segs := Segments(h)
	for _, ov := range Overlaps(segs) {
		both := "until the end of the run"
		if e := min(ov.A.End, ov.B.End); e != forever {
			both = fmt.Sprintf("for %.3fs", float64(e-ov.B.Start)/1e9)
		}
		r.violate(fmt.Sprintf("%s active on %s and %s at the same time %s", ov.A.Actor, ov.A.Node, ov.B.Node, both),
			opsServedBy(h, ov.A.Actor, ov.B.Start, min(ov.A.End, ov.B.End)), ov.A.String(), ov.B.String())
	}
	type key struct {
		actor string
		token uint64
	}
	where := map[key]Segment{}
	for _, s := range segs {
		k := key{s.Actor, s.Token}
		if p, ok := where[k]; ok && p.Node != s.Node {
			r.violate(fmt.Sprintf("%s token %d activated on two nodes, %s and %s", s.Actor, s.Token, p.Node, s.Node), nil, p.String(), s.String())
			continue
		}
		where[k] = s
	}
	actors := map[string]bool{}
	for _, s := range segs {
		actors[s.Actor] = true
	}
	r.note("%d activation segments of %d actors", len(segs), len(actors))
	return r
}

// opsServedBy lists ok incr/get ops on actor that ran within [from, to].
func opsServedBy(h *History, actor string, from, to int64) []int64 {
	var out []int64
	for _, o := range h.Ops {
		if o.Actor == actor && o.Result == ResultOK && (o.Kind == OpIncr || o.Kind == OpGet) && o.Invoke <= to && o.Complete >= from {
			out = append(out, o.ID)
			if len(out) == 6 {
				break
			}
		}
	}
	return out
}

// CheckLeaseSafety (G6, LeaseSafety and FalseSuspicionSafety):
//
//   - No operation is served under a stale token: once an activation with
//     a newer token of the actor exists, nothing may run under an older one
//     (a woken or cut-off node serves only after renewing, and then only
//     what it still owns).
//   - A node that was running (not dead, not stopped) when its actor was
//     placed anew elsewhere had already deactivated it: it fenced itself
//     before the leader re-placed.
func CheckLeaseSafety(h *History) Result {
	var r Result
	segs := Segments(h)
	// First activation of every (actor, token).
	type act struct {
		token uint64
		start int64
		node  string
	}
	firsts := map[string][]act{}
	seen := map[string]map[uint64]bool{}
	for _, s := range segs {
		if seen[s.Actor] == nil {
			seen[s.Actor] = map[uint64]bool{}
		}
		if seen[s.Actor][s.Token] {
			continue
		}
		seen[s.Actor][s.Token] = true
		firsts[s.Actor] = append(firsts[s.Actor], act{s.Token, s.Start, s.Node})
	}
	for _, l := range firsts {
		sort.Slice(l, func(i, j int) bool { return l[i].token < l[j].token })
	}
	served := 0
	for _, o := range h.Ops {
		if o.Result != ResultOK || (o.Kind != OpIncr && o.Kind != OpGet) {
			continue
		}
		served++
		for _, a := range firsts[o.Actor] {
			if a.token > o.Token && a.start < o.Invoke {
				r.violate(fmt.Sprintf("%s served %s of %s under token %d after token %d was activated on %s",
					o.Owner, o.Kind, o.Actor, o.Token, a.token, a.node), []int64{o.ID},
					fmt.Sprintf("activation of %s token %d on %s at %d (%.3fs before the op was sent)", o.Actor, a.token, a.node, a.start, float64(o.Invoke-a.start)/1e9))
				break
			}
		}
	}

	// Self-fencing before re-placement.
	pw := procWindows(h)
	ts := BuildTokens(h)
	replaced := 0
	for _, s := range segs {
		ti, ok := ts.Info(s.Actor, s.Token)
		if !ok || ti.Parent != 0 || ti.FirstAct != s.Start {
			continue // only the first activation of a fresh placement
		}
		for _, p := range segs {
			if p.Actor != s.Actor || p.Token >= s.Token || p.Node == s.Node || p.Start > s.Start {
				continue
			}
			if p.EndReason != "deactivate" && p.EndReason != "open" {
				continue // died or was stopped: nothing to fence
			}
			replaced++
			if p.End > s.Start && runningAt(pw, p.Node, s.Start) {
				r.violate(fmt.Sprintf("%s was placed anew on %s (token %d) while %s, running, still hosted it (token %d): it did not fence itself first",
					s.Actor, s.Node, s.Token, p.Node, p.Token), opsServedBy(h, s.Actor, s.Start, p.End), p.String(), s.String())
			}
		}
	}
	r.note("%d served ops, %d re-placements checked", served, replaced)
	return r
}

// runningAt reports whether node's process was alive and not stopped at t.
func runningAt(pw map[string][]Window, node string, t int64) bool {
	for _, w := range pw[node] {
		if (w.Kind == "dead" || w.Kind == "stopped") && w.Contains(t) {
			return false
		}
	}
	return true
}
