package nemesis

import (
	"fmt"
	"sort"
	"time"
)

// WakeGrace is how long a node woken by SIGCONT gets to notice that its
// lease ran out and drop its activations before they count as live again.
// The lease check is a timer that fires at once on wake; anything the node
// serves in this time is caught by the LeaseSafety checker (it serves ops,
// not activations).
const WakeGrace = time.Second

// Segment is a stretch of time in which a node hosted an actor: from an
// activation to its deactivation, cut short when the process died or was
// stopped (a stopped process hosts nothing it can use; if it wakes with the
// activation still there, the activation counts again from WakeGrace after
// SIGCONT).
type Segment struct {
	Actor      string
	Node       string
	Token      uint64
	Start, End int64
	EndReason  string // deactivate, dead, stopped, open
	StartValue int64  // counter value at activation
	Deact      *Activation
}

func (s Segment) String() string {
	end := "open"
	if s.End != forever {
		end = fmt.Sprint(s.End)
	}
	return fmt.Sprintf("%s on %s token %d [%d..%s] (%s)", s.Actor, s.Node, s.Token, s.Start, end, s.EndReason)
}

// Segments builds the activation segments of every actor from the
// activation logs and the process timeline, sorted by actor then start.
func Segments(h *History) []Segment {
	pw := procWindows(h)
	byNode := map[string][]Activation{}
	for _, a := range h.Activations {
		byNode[a.Node] = append(byNode[a.Node], a)
	}
	var out []Segment
	for node, evs := range byNode {
		sort.SliceStable(evs, func(i, j int) bool { return evs[i].Mono < evs[j].Mono })
		for i, e := range evs {
			if e.Kind != "activate" {
				continue
			}
			seg := Segment{Actor: e.Actor, Node: node, Token: e.Token, Start: e.Mono, End: forever, EndReason: "open", StartValue: e.Value}
			for _, d := range evs[i+1:] {
				if d.Actor != e.Actor {
					continue
				}
				if d.Kind == "deactivate" {
					d := d
					seg.End, seg.EndReason, seg.Deact = d.Mono, "deactivate", &d
				}
				break // the next event of this actor here ends the activation (or a new process started it again)
			}
			// Death of the process that held it.
			for _, w := range pw[node] {
				if w.Kind == "dead" && w.From >= seg.Start && w.From < seg.End {
					seg.End, seg.EndReason, seg.Deact = w.From, "dead", nil
					break
				}
			}
			out = append(out, cutByStops(seg, pw[node])...)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Actor != out[j].Actor {
			return out[i].Actor < out[j].Actor
		}
		return out[i].Start < out[j].Start
	})
	return out
}

// cutByStops removes the stopped windows (plus WakeGrace) from seg.
func cutByStops(seg Segment, ws []Window) []Segment {
	var out []Segment
	cur := seg
	for _, w := range ws {
		if w.Kind != "stopped" || w.From < cur.Start || w.From >= cur.End {
			continue
		}
		head := cur
		head.End, head.EndReason, head.Deact = w.From, "stopped", nil
		out = append(out, head)
		resume := w.To
		if resume != forever {
			resume += int64(WakeGrace)
		}
		if resume >= cur.End {
			return out
		}
		cur.Start = resume
	}
	return append(out, cur)
}

// Overlap is two segments of one actor on different nodes sharing time.
type Overlap struct{ A, B Segment }

// Overlaps returns every pair of overlapping segments of the same actor on
// different nodes.
func Overlaps(segs []Segment) []Overlap {
	var out []Overlap
	for i := range segs {
		for j := i + 1; j < len(segs) && segs[j].Actor == segs[i].Actor; j++ {
			if segs[j].Start >= segs[i].End {
				break // sorted by start: no later one overlaps i either
			}
			if segs[j].Node != segs[i].Node {
				out = append(out, Overlap{segs[i], segs[j]})
			}
		}
	}
	return out
}
