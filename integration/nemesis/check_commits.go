package nemesis

import (
	"fmt"
	"sort"
)

// CheckNoLostCommits (G8, NoLostCommits and ReadYourWrites/MonotonicReads):
// what was acknowledged stays.
//
//   - Every acknowledged placement (and migration) is still in force at the
//     end, with at least that token (on the same node if the very same
//     token), unless its node later failed (its placements are then
//     released, by design).
//   - A consistent lookup never returns a token older than one already
//     acknowledged to any client before the lookup was sent.
//   - Acknowledged increments survive: a counter starts again from zero
//     (a new lineage, see Tokens) only when the node that held it crashed,
//     was stopped or was cut off after its last acknowledged operation.
func CheckNoLostCommits(h *History) Result {
	var r Result
	pw := procWindows(h)
	spans := netTimeline(h)
	final := map[string]PlacementBrief{}
	haveFinal := h.Final != nil && h.Final.Converged && h.Final.Placements[h.Final.Leader] != nil
	if haveFinal {
		for _, p := range h.Final.Placements[h.Final.Leader] {
			final[p.Actor] = p
		}
	}
	end := forever
	if h.Final != nil && h.Final.End != 0 {
		end = h.Final.End
	}

	// Acknowledged placements survive.
	type ack struct {
		op    Op
		token uint64
		node  string
	}
	latest := map[string]ack{}
	for _, o := range h.Ops {
		if o.Result != ResultOK || o.Token == 0 {
			continue
		}
		var node string
		switch o.Kind {
		case OpPlace, OpIncr, OpGet:
			node = o.Owner
		case OpMigrate:
			node = o.Target
			if o.MigState == "aborted" {
				node = o.From
			}
		default:
			continue
		}
		if a, ok := latest[o.Actor]; !ok || o.Token > a.token {
			latest[o.Actor] = ack{o, o.Token, node}
		}
	}
	if haveFinal {
		var actors []string
		for a := range latest {
			actors = append(actors, a)
		}
		sort.Strings(actors)
		for _, a := range actors {
			k := latest[a]
			p, ok := final[a]
			excused := faultOn(pw, spans, k.node, k.op.Invoke, end) || leftAfter(h, k.node, k.op.Invoke)
			switch {
			case !ok && !excused:
				r.violate(fmt.Sprintf("%s was acknowledged on %s with token %d but is not placed at the end, and %s never failed", a, k.node, k.token, k.node), []int64{k.op.ID})
			case ok && p.Token < k.token:
				r.violate(fmt.Sprintf("%s ends with token %d, older than the acknowledged %d", a, p.Token, k.token), []int64{k.op.ID},
					fmt.Sprintf("final placement %+v", p))
			case ok && p.Token == k.token && p.Node != k.node:
				r.violate(fmt.Sprintf("%s token %d was acknowledged on %s but ends on %s", a, k.token, k.node, p.Node), []int64{k.op.ID},
					fmt.Sprintf("final placement %+v", p))
			}
		}
	}

	// Consistent lookups never go back in time.
	var acks []Op
	for _, o := range h.Ops {
		if o.Result == ResultOK && o.Token != 0 && o.Kind != OpLookup {
			acks = append(acks, o)
		}
	}
	sort.Slice(acks, func(i, j int) bool { return acks[i].Complete < acks[j].Complete })
	lookups := 0
	for _, o := range h.Ops {
		if o.Kind != OpLookup || !o.Consistent || o.Result != ResultOK || !o.Found {
			continue
		}
		lookups++
		for _, a := range acks {
			if a.Complete >= o.Invoke {
				break
			}
			if a.Actor == o.Actor && a.Token > o.Token {
				r.violate(fmt.Sprintf("consistent lookup of %s returned token %d after token %d was acknowledged", o.Actor, o.Token, a.Token), []int64{a.ID, o.ID})
				break
			}
		}
	}

	// Increments survive within a lineage; a new lineage needs a fault.
	ts := BuildTokens(h)
	resets := 0
	for _, actor := range ts.Actors() {
		toks := ts.Sorted(actor)
		lastOK := map[uint64]Op{}      // lineage root → last ok op
		ackedIncr := map[uint64]bool{} // lineage root → has an acknowledged incr
		for _, o := range h.Ops {
			if o.Actor != actor || o.Result != ResultOK || (o.Kind != OpIncr && o.Kind != OpGet) || o.Token == 0 {
				continue
			}
			root := ts.Root(actor, o.Token)
			if p, ok := lastOK[root]; !ok || o.Complete > p.Complete {
				lastOK[root] = o
			}
			if o.Kind == OpIncr && o.Value > 0 {
				ackedIncr[root] = true
			}
		}
		var prevRoot uint64
		for _, t := range toks {
			if ts.Root(actor, t) != t {
				continue
			}
			if prevRoot != 0 && ackedIncr[prevRoot] {
				resets++
				last := lastOK[prevRoot]
				newTI, _ := ts.Info(actor, t)
				holder := lastHolder(ts, actor, prevRoot, t)
				until := newTI.FirstAct
				if until == 0 {
					until = firstServed(h, actor, t)
				}
				if until == 0 {
					until = end
				}
				if holder != "" && !faultOn(pw, spans, holder, last.Invoke, until) {
					r.violate(fmt.Sprintf("%s started again from zero with token %d on %s, losing the increments acknowledged under token %d, but %s (its holder) had no fault after the last of them",
						actor, t, newTI.Node, prevRoot, holder), []int64{last.ID})
				}
			}
			prevRoot = t
		}
	}
	r.note("%d actors with acknowledged placements, %d consistent lookups, %d counter resets", len(latest), lookups, resets)
	return r
}

// lastHolder is the node of the newest token below next in root's lineage.
func lastHolder(ts *Tokens, actor string, root, next uint64) string {
	var best *TokenInfo
	for _, t := range ts.Sorted(actor) {
		if t >= next {
			break
		}
		if ts.Root(actor, t) == root {
			best, _ = ts.Info(actor, t)
		}
	}
	if best == nil {
		return ""
	}
	return best.Node
}

// firstServed is when the first op under token completed (0 if none).
func firstServed(h *History, actor string, token uint64) int64 {
	for _, o := range h.Ops {
		if o.Actor == actor && o.Token == token && o.Result == ResultOK {
			return o.Complete
		}
	}
	return 0
}

// leftAfter reports whether node gracefully left after t.
func leftAfter(h *History, node string, t int64) bool {
	for _, e := range h.Nemesis {
		if e.Node == node && (e.Kind == EvLeaveBegin || e.Kind == EvExit) && e.Time >= t {
			return true
		}
	}
	return false
}
