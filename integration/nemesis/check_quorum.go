package nemesis

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// CheckQuorumGated (G2, QuorumGated and the quorum rule): nothing is
// committed without a majority of the configured voters.
//
//   - A write acknowledged as committed (a new placement, a finished
//     migration) through a node that, for the whole time of the call, could
//     reach only a minority of voters, directly or through other nodes (cut
//     links, dead or stopped voters).
//   - A write refused with no_quorum that took effect afterwards: a
//     migration of the same actor to the same target started after the call
//     had returned, with no other such request sent in the meantime (the
//     API promises that nothing was applied by a call that failed so).
//   - Two different commits at one Raft index: the same actor acknowledged
//     or observed with the same token on two different nodes.
//   - Two different views with one epoch: observations of the same epoch
//     with a different view index or different members (a view change
//     committed on both sides of a partition).
func CheckQuorumGated(h *History) Result {
	var r Result
	pw := procWindows(h)
	spans := netTimeline(h)
	writes := 0
	for _, o := range h.Ops {
		if !o.Commits() {
			continue
		}
		writes++
		if minorityThroughout(h, pw, spans, o.Node, o.Invoke, o.Complete) {
			r.violate(fmt.Sprintf("%s of %s committed through %s while %s could reach only a minority of voters %v, even through other nodes",
				o.Kind, o.Actor, o.Node, o.Node, h.Servers()), []int64{o.ID}, netEvidence(spans, o.Invoke, o.Complete)...)
		}
	}

	late := checkLateNoQuorum(&r, h)

	// One (actor, token) → one node.
	type key struct {
		actor string
		token uint64
	}
	seen := map[key]string{}
	src := map[key]string{}
	check := func(actor string, token uint64, node, from string, op int64) {
		if token == 0 || node == "" {
			return
		}
		k := key{actor, token}
		if prev, ok := seen[k]; ok && prev != node {
			var ops []int64
			if op != 0 {
				ops = []int64{op}
			}
			r.violate(fmt.Sprintf("%s has token %d on two nodes: %s and %s (two different entries committed at index %d)", actor, token, prev, node, token),
				ops, "first: "+src[k], "then: "+from)
			return
		}
		seen[k], src[k] = node, from
	}
	for _, o := range h.Ops {
		if o.Result != ResultOK {
			continue
		}
		switch o.Kind {
		case OpPlace, OpLookup, OpIncr, OpGet:
			if o.Kind != OpLookup || o.Found {
				check(o.Actor, o.Token, o.Owner, o.String(), o.ID)
			}
		case OpMigrate:
			node := o.Target
			if o.MigState == "aborted" {
				node = o.From
			}
			check(o.Actor, o.Token, node, o.String(), o.ID)
		}
	}
	for _, s := range h.Snapshots {
		for _, p := range s.Placements {
			check(p.Actor, p.Token, p.Node, fmt.Sprintf("snapshot of %s at %d: %+v", s.Node, s.Time, p), 0)
		}
	}

	// One epoch → one view.
	type viewID struct {
		index   uint64
		members string
	}
	byEpoch := map[uint64]map[uint64]string{} // epoch → index → first observation
	for _, s := range h.Statuses {
		if s.Epoch == 0 {
			continue
		}
		m := byEpoch[s.Epoch]
		if m == nil {
			m = map[uint64]string{}
			byEpoch[s.Epoch] = m
		}
		if _, ok := m[s.ViewIndex]; !ok {
			m[s.ViewIndex] = fmt.Sprintf("status of %s at %d: epoch %d view index %d", s.Node, s.Time, s.Epoch, s.ViewIndex)
		}
	}
	views := map[uint64]map[viewID]string{}
	for _, v := range h.Views {
		if v.Epoch == 0 {
			continue
		}
		m := views[v.Epoch]
		if m == nil {
			m = map[viewID]string{}
			views[v.Epoch] = m
		}
		id := viewID{v.Index, membersKey(v.Members)}
		if _, ok := m[id]; !ok {
			m[id] = fmt.Sprintf("view of %s at %d: epoch %d index %d %s", v.Node, v.Time, v.Epoch, v.Index, id.members)
		}
		if b := byEpoch[v.Epoch]; b == nil {
			byEpoch[v.Epoch] = map[uint64]string{v.Index: m[id]}
		} else if _, ok := b[v.Index]; !ok {
			b[v.Index] = m[id]
		}
	}
	var epochs []uint64
	for e := range byEpoch {
		epochs = append(epochs, e)
	}
	sort.Slice(epochs, func(i, j int) bool { return epochs[i] < epochs[j] })
	for _, e := range epochs {
		if len(byEpoch[e]) > 1 {
			r.violate(fmt.Sprintf("epoch %d was committed at %d different indexes", e, len(byEpoch[e])), nil, sortedValues(byEpoch[e])...)
		} else if len(views[e]) > 1 {
			var ev []string
			for _, s := range views[e] {
				ev = append(ev, s)
			}
			sort.Strings(ev)
			r.violate(fmt.Sprintf("epoch %d has %d different member lists", e, len(views[e])), nil, ev...)
		}
	}
	r.note("%d acknowledged commits, %d tokens, %d epochs, %d refused migrations checked", writes, len(seen), len(epochs), late)
	return r
}

func membersKey(ms []MemberBrief) string {
	parts := make([]string, len(ms))
	for i, m := range ms {
		parts[i] = fmt.Sprintf("%s:%s#%d", m.ID, m.Status, m.Incarnation)
	}
	sort.Strings(parts)
	return "[" + strings.Join(parts, " ") + "]"
}

func sortedValues[K comparable](m map[K]string) []string {
	var out []string
	for _, v := range m {
		out = append(out, v)
	}
	sort.Strings(out)
	return out
}

// netEvidence lists the network states in force during [from, to].
func netEvidence(spans []netSpan, from, to int64) []string {
	var out []string
	for _, s := range spans {
		if s.Overlaps(from, to) {
			start := "start"
			if s.From > -1<<62 {
				start = fmt.Sprint(s.From)
			}
			out = append(out, fmt.Sprintf("network from %s: %s", start, s.State))
		}
	}
	return out
}

// lateSlack absorbs the difference between the client's monotonic stamps
// and the proposer's wall-clock stamp.
const lateSlack = int64(200 * time.Millisecond)

// checkLateNoQuorum reports migrations started after a migrate call for
// the same actor and target had failed with no_quorum. It returns how many
// such calls it checked.
func checkLateNoQuorum(r *Result, h *History) int {
	if h.Meta.WallStart == 0 {
		return 0
	}
	var refused, all []Op
	for _, o := range h.Ops {
		if o.Kind != OpMigrate {
			continue
		}
		all = append(all, o)
		if o.Code == "no_quorum" {
			refused = append(refused, o)
		}
	}
	seen := map[uint64]bool{}
	for _, o := range refused {
		for _, m := range h.Migrations {
			if seen[m.ID] || m.Actor != o.Actor || m.To != o.Target {
				continue
			}
			started := h.Meta.MonoOfWall(m.StartedAt)
			if started == 0 || started <= o.Complete+lateSlack {
				continue
			}
			// Another call for the same move may have started it: one that
			// succeeded with this very migration, or one whose outcome is
			// unknown (its request may still have been running on a server),
			// invoked before the migration started — also before the refused
			// call was.
			other := false
			for _, p := range all {
				if p.ID == o.ID || p.Actor != o.Actor || p.Target != o.Target || p.Invoke > started {
					continue
				}
				if (p.Result == ResultOK && p.MigID == m.ID) || (p.Result == ResultUnknown && p.Code != "no_quorum") {
					other = true
				}
			}
			if other {
				continue
			}
			seen[m.ID] = true
			r.violate(fmt.Sprintf("migrate of %s to %s failed with no_quorum, yet migration %d of it started %.1fs after the call returned",
				o.Actor, o.Target, m.ID, float64(started-o.Complete)/1e9), []int64{o.ID},
				fmt.Sprintf("migration %d %s→%s token %d→%d %s (%s), started at %d", m.ID, m.From, m.To, m.OldToken, m.NewToken, m.State, m.Reason, started))
		}
	}
	return len(refused)
}
