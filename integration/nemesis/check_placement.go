package nemesis

import "fmt"

// CheckPlacementConsistency (G5, PlacementConsistency): every committed
// placement, in every snapshot (a placement table read under one view,
// including the final ones), points at a node that is Active in that view (or
// Leaving, while it drains) with the incarnation the placement was made
// for: never at a Failed, Left, Joining or unknown node.
func CheckPlacementConsistency(h *History) Result {
	var r Result
	n := 0
	bad := map[string]bool{}
	check := func(where string, v ViewObs, ps []PlacementBrief) {
		for _, p := range ps {
			n++
			m, ok := v.Member(p.Node)
			var why string
			switch {
			case !ok:
				why = "not in the view"
			case m.Status != "active" && m.Status != "leaving":
				why = "status " + m.Status
			case m.Incarnation != p.Incarnation:
				why = fmt.Sprintf("incarnation %d, placement made for %d", m.Incarnation, p.Incarnation)
			default:
				continue
			}
			k := fmt.Sprintf("%s/%d/%s", p.Actor, p.Token, why)
			if bad[k] {
				continue // the same placement in the next snapshots
			}
			bad[k] = true
			r.violate(fmt.Sprintf("%s (token %d) placed on %s: %s", p.Actor, p.Token, p.Node, why), nil,
				fmt.Sprintf("%s: view epoch %d index %d %s", where, v.Epoch, v.Index, membersKey(v.Members)))
		}
	}
	for _, s := range h.Snapshots {
		check(fmt.Sprintf("snapshot of %s at %d", s.Node, s.Time), s.View, s.Placements)
	}
	r.note("%d placements in %d snapshots", n, len(h.Snapshots))
	return r
}
