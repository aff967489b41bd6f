package cluster

import "github.com/kelpie/cluster/consensus"

// Delta following. A client follows the committed view with blocking
// queries; answering each one with the whole view made every view change
// cost O(N) per client, O(N²) in all: at 1,000 members a view is ~260 KB of
// JSON (~10 ms to decode), so one epoch of a join storm sent ~260 MB from
// three servers and cost the fleet ~10 CPU-seconds of decoding. A client
// that asks with delta=1 names the view it holds (index=N); a server that
// remembers what changed since view N answers with the current records of
// the members that changed, which is what the epochs in between changed.
//
// A server records, for each view it publishes, which members differ from
// the view it published before (comparing the two record by record, not
// by UpdatedAt, so that it is exact whatever produced the newer view: a
// snapshot restore rewrites records without advancing UpdatedAt). The
// client checks that the merge has the member count the server states and
// otherwise asks for the whole view.

// viewDelta is the answer to GET /v1/view?index=N&delta=1. With Base 0 it
// is a whole view (the JSON of consensus.View decodes into it as such);
// otherwise Members are the records of the view at Index that are new or
// differ from the view at Base, Removed the IDs the view at Index no longer
// has, and Count the number of members of the view at Index.
type viewDelta struct {
	Epoch   uint64             `json:"epoch"`
	Index   uint64             `json:"index"`
	Base    uint64             `json:"base,omitempty"`
	Count   int                `json:"count,omitempty"`
	Members []consensus.Member `json:"members"`
	Removed []string           `json:"removed,omitempty"`
}

// diffViews returns the delta that turns old into cur. Both views' members
// are sorted by ID.
func diffViews(old, cur consensus.View) viewDelta {
	d := viewDelta{Epoch: cur.Epoch, Index: cur.Index, Base: old.Index, Count: len(cur.Members), Members: []consensus.Member{}}
	i, j := 0, 0
	for i < len(old.Members) || j < len(cur.Members) {
		switch {
		case j == len(cur.Members) || (i < len(old.Members) && old.Members[i].ID < cur.Members[j].ID):
			d.Removed = append(d.Removed, old.Members[i].ID)
			i++
		case i == len(old.Members) || cur.Members[j].ID < old.Members[i].ID:
			d.Members = append(d.Members, cur.Members[j])
			j++
		default:
			if old.Members[i] != cur.Members[j] {
				d.Members = append(d.Members, cur.Members[j])
			}
			i++
			j++
		}
	}
	return d
}

// applyDelta returns base with d applied, and false if d does not fit base
// (another base index, or a member count other than d says): the caller
// then needs the whole view. base is not modified.
func applyDelta(base consensus.View, d viewDelta) (consensus.View, bool) {
	if d.Base == 0 {
		return consensus.View{Epoch: d.Epoch, Index: d.Index, Members: d.Members}, true
	}
	if d.Base != base.Index {
		return consensus.View{}, false
	}
	removed := make(map[string]bool, len(d.Removed))
	for _, id := range d.Removed {
		removed[id] = true
	}
	out := make([]consensus.Member, 0, d.Count)
	i, j := 0, 0
	for i < len(base.Members) || j < len(d.Members) {
		switch {
		case j == len(d.Members) || (i < len(base.Members) && base.Members[i].ID < d.Members[j].ID):
			if !removed[base.Members[i].ID] {
				out = append(out, base.Members[i])
			}
			i++
		case i == len(base.Members) || d.Members[j].ID < base.Members[i].ID:
			out = append(out, d.Members[j])
			j++
		default:
			out = append(out, d.Members[j])
			i++
			j++
		}
	}
	if len(out) != d.Count {
		return consensus.View{}, false
	}
	for k := 1; k < len(out); k++ {
		if out[k-1].ID >= out[k].ID {
			return consensus.View{}, false // the delta's members were not sorted
		}
	}
	return consensus.View{Epoch: d.Epoch, Index: d.Index, Members: out}, true
}
