package nemesis

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/anishathalye/porcupine"
)

// LinearizabilityTimeout bounds porcupine on one lineage.
var LinearizabilityTimeout = 20 * time.Second

// VisualizeDir, when set, receives a porcupine visualization (HTML) of
// every lineage that is not linearizable.
var VisualizeDir string

type counterIn struct{ Incr bool }

type counterOut struct {
	Unknown bool
	Value   int64
	Token   uint64
}

type counterState struct {
	Value int64
	Token uint64
}

// counterModel is a counter whose incr returns the new value and whose get
// returns the value, run under fencing tokens that never go back. An incr
// whose outcome is unknown may have happened (or may never take effect:
// its return is at infinity).
var counterModel = porcupine.Model{
	Init: func() interface{} { return counterState{} },
	Step: func(state, input, output interface{}) (bool, interface{}) {
		s := state.(counterState)
		in := input.(counterIn)
		out := output.(counterOut)
		if out.Unknown {
			if in.Incr {
				return true, counterState{Value: s.Value + 1, Token: s.Token}
			}
			return true, s
		}
		if out.Token < s.Token {
			return false, s
		}
		if in.Incr {
			return out.Value == s.Value+1, counterState{Value: out.Value, Token: out.Token}
		}
		return out.Value == s.Value, counterState{Value: s.Value, Token: out.Token}
	},
	Equal: func(a, b interface{}) bool { return a.(counterState) == b.(counterState) },
	DescribeOperation: func(input, output interface{}) string {
		in, out := input.(counterIn), output.(counterOut)
		op := "get"
		if in.Incr {
			op = "incr"
		}
		if out.Unknown {
			return op + " → ?"
		}
		return fmt.Sprintf("%s → %d (token %d)", op, out.Value, out.Token)
	},
	DescribeState: func(state interface{}) string {
		s := state.(counterState)
		return fmt.Sprintf("%d (token %d)", s.Value, s.Token)
	},
}

// CheckLinearizable checks that every counter behaves as one linearizable
// counter, with porcupine. A counter's history is split by lineage (a fresh
// placement and the migrations that carry its state, see Tokens): a
// lineage starts at 0; whether a new lineage was allowed (the previous
// holder crashed or was cut off) is G8's business. Incrs with an unknown
// outcome go into every lineage they could have landed in. Across
// lineages, tokens must follow real time: an operation that completed
// before another was sent never carries a newer token.
func CheckLinearizable(h *History) Result {
	var r Result
	ts := BuildTokens(h)
	byActor := map[string][]Op{}
	for _, o := range h.Ops {
		if o.Kind != OpIncr && o.Kind != OpGet {
			continue
		}
		if o.Result == ResultOK || (o.Result == ResultUnknown && o.Kind == OpIncr) {
			byActor[o.Actor] = append(byActor[o.Actor], o)
		}
	}
	var actors []string
	for a := range byActor {
		actors = append(actors, a)
	}
	sort.Strings(actors)
	lineages, checked, unknown := 0, 0, 0
	for _, actor := range actors {
		ops := byActor[actor]
		checkTokenOrder(&r, actor, ops)
		groups := map[uint64][]Op{}
		var unknowns []Op
		for _, o := range ops {
			if o.Result != ResultOK {
				unknowns = append(unknowns, o)
				continue
			}
			root := ts.Root(actor, o.Token)
			groups[root] = append(groups[root], o)
		}
		var roots []uint64
		for root := range groups {
			roots = append(roots, root)
		}
		sort.Slice(roots, func(i, j int) bool { return roots[i] < roots[j] })
		for _, root := range roots {
			lineages++
			g := groups[root]
			var lastDone int64
			for _, o := range g {
				lastDone = max(lastDone, o.Complete)
			}
			for _, u := range unknowns {
				if u.Invoke <= lastDone {
					g = append(g, u)
				}
			}
			hist := make([]porcupine.Operation, 0, len(g))
			for _, o := range g {
				out := counterOut{Value: o.Value, Token: o.Token}
				ret := o.Complete
				if o.Result != ResultOK {
					out, ret = counterOut{Unknown: true}, math.MaxInt64
				}
				hist = append(hist, porcupine.Operation{ClientId: o.Process + 1, Input: counterIn{Incr: o.Kind == OpIncr},
					Call: o.Invoke, Output: out, Return: ret, Metadata: o.ID})
			}
			checked += len(hist)
			res, info := porcupine.CheckOperationsVerbose(counterModel, hist, LinearizabilityTimeout)
			switch res {
			case porcupine.Illegal:
				ev := []string{fmt.Sprintf("lineage of token %d: %d operations (%d with unknown outcome)", root, len(hist), len(hist)-len(groups[root]))}
				if VisualizeDir != "" {
					p := filepath.Join(VisualizeDir, fmt.Sprintf("linearizability-%s-%d.html", actor, root))
					if err := porcupine.VisualizePath(counterModel, info, p); err == nil {
						ev = append(ev, "visualization: "+p)
					} else {
						fmt.Fprintf(os.Stderr, "nemesis: visualization: %v\n", err)
					}
				}
				r.violate(fmt.Sprintf("%s (lineage of token %d) is not a linearizable counter", actor, root), witness(info, hist), ev...)
			case porcupine.Unknown:
				unknown++
				r.note("INCONCLUSIVE: %s lineage %d not decided within %s (%d ops)", actor, root, LinearizabilityTimeout, len(hist))
			}
		}
	}
	r.note("%d counters, %d lineages, %d operations", len(actors), lineages, checked)
	return r
}

// witness picks the operations porcupine could not linearize: a few of the
// last ones of the longest linearizable prefix it found, for context, then
// the first few (in call order) that no prefix could take.
func witness(info porcupine.LinearizationInfo, hist []porcupine.Operation) []int64 {
	var longest []porcupine.Operation
	for _, part := range info.PartialLinearizationsOperations() {
		for _, lin := range part {
			if len(lin) > len(longest) {
				longest = lin
			}
		}
	}
	in := map[int64]bool{}
	for _, o := range longest {
		in[o.Metadata.(int64)] = true
	}
	var ctx []int64
	for i := len(longest) - 1; i >= 0 && len(ctx) < 3; i-- {
		if !longest[i].Output.(counterOut).Unknown {
			ctx = append([]int64{longest[i].Metadata.(int64)}, ctx...)
		}
	}
	byCall := append([]porcupine.Operation(nil), hist...)
	sort.Slice(byCall, func(a, b int) bool { return byCall[a].Call < byCall[b].Call })
	var out []int64
	for _, o := range byCall {
		id := o.Metadata.(int64)
		if in[id] || o.Output.(counterOut).Unknown {
			continue
		}
		out = append(out, id)
		if len(out) == 4 {
			break
		}
	}
	return append(ctx, out...)
}

// checkTokenOrder: an operation that completed before another was sent
// never ran under a newer token than it.
func checkTokenOrder(r *Result, actor string, ops []Op) {
	var ok []Op
	for _, o := range ops {
		if o.Result == ResultOK {
			ok = append(ok, o)
		}
	}
	byDone := append([]Op(nil), ok...)
	sort.Slice(byDone, func(i, j int) bool { return byDone[i].Complete < byDone[j].Complete })
	bySent := append([]Op(nil), ok...)
	sort.Slice(bySent, func(i, j int) bool { return bySent[i].Invoke < bySent[j].Invoke })
	var best Op
	k := 0
	reported := 0
	for _, o := range bySent {
		for k < len(byDone) && byDone[k].Complete < o.Invoke {
			if byDone[k].Token > best.Token {
				best = byDone[k]
			}
			k++
		}
		if best.Token > o.Token && reported < 3 {
			reported++
			r.violate(fmt.Sprintf("%s ran under token %d after an operation under the newer token %d had completed", actor, o.Token, best.Token), []int64{best.ID, o.ID})
		}
	}
}
