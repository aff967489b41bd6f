package nemesis

import (
	"fmt"
	"strings"
)

// Violation is one breach of a guarantee, with the operations and other
// evidence that show it.
type Violation struct {
	Msg      string
	Ops      []int64  // offending operations (IDs in the history)
	Evidence []string // other records (activations, observations, events)
}

// Result is what one checker found.
type Result struct {
	Checker    string // e.g. "G4 SingleActivation"
	Violations []Violation
	Notes      []string // what was checked (counts), and inconclusive parts
}

// OK reports whether no violation was found.
func (r Result) OK() bool { return len(r.Violations) == 0 }

func (r *Result) violate(msg string, ops []int64, evidence ...string) {
	r.Violations = append(r.Violations, Violation{Msg: msg, Ops: ops, Evidence: evidence})
}

func (r *Result) note(format string, args ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

// Checker judges a history for one guarantee.
type Checker struct {
	Name  string
	Check func(h *History) Result
}

// Checkers returns one checker per guarantee, G1 to G10, plus the
// linearizability of the counters.
func Checkers() []Checker {
	return []Checker{
		{"G1 NoSplitBrain", CheckNoSplitBrain},
		{"G2 QuorumGated", CheckQuorumGated},
		{"G3 MonotonicEpoch", CheckMonotonicEpoch},
		{"G4 SingleActivation", CheckSingleActivation},
		{"G5 PlacementConsistency", CheckPlacementConsistency},
		{"G6 LeaseSafety", CheckLeaseSafety},
		{"G7 MigrationAtomicity", CheckMigrationAtomicity},
		{"G8 NoLostCommits", CheckNoLostCommits},
		{"G9 Convergence", CheckConvergence},
		{"G10 JoinIsReal", CheckJoinIsReal},
		{"Linearizability (counters)", CheckLinearizable},
	}
}

// RunCheckers runs every checker on h.
func RunCheckers(h *History) []Result {
	var out []Result
	for _, c := range Checkers() {
		r := c.Check(h)
		r.Checker = c.Name
		out = append(out, r)
	}
	return out
}

// maxShown bounds the violations printed per checker.
const maxShown = 8

// Report renders the failed checkers with their offending operations.
func Report(h *History, results []Result) string {
	var b strings.Builder
	for _, r := range results {
		if r.OK() {
			continue
		}
		fmt.Fprintf(&b, "CHECKER FAILED: %s — %d violation(s)\n", r.Checker, len(r.Violations))
		for i, v := range r.Violations {
			if i == maxShown {
				fmt.Fprintf(&b, "  … %d more\n", len(r.Violations)-maxShown)
				break
			}
			fmt.Fprintf(&b, "  - %s\n", v.Msg)
			for _, id := range v.Ops {
				if o, ok := h.OpByID(id); ok {
					fmt.Fprintf(&b, "      %s\n", o)
				}
			}
			for _, e := range v.Evidence {
				fmt.Fprintf(&b, "      %s\n", e)
			}
		}
	}
	return b.String()
}

// Summary is one line per checker.
func Summary(results []Result) string {
	var b strings.Builder
	for _, r := range results {
		state := "ok"
		if !r.OK() {
			state = fmt.Sprintf("FAILED (%d)", len(r.Violations))
		}
		fmt.Fprintf(&b, "  %-28s %s", r.Checker, state)
		if len(r.Notes) > 0 {
			fmt.Fprintf(&b, " — %s", strings.Join(r.Notes, "; "))
		}
		b.WriteByte('\n')
	}
	return b.String()
}
