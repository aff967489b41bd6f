package nemesis

import (
	"os"
	"strings"
	"testing"
)

// Each checker is shown to catch its bug: a hand-made history with the
// violation must fail, and the same history without it must pass.

func sec(x float64) int64 { return int64(x * 1e9) }

func base() *History {
	return &History{Meta: Meta{Nodes: []NodeInfo{
		{Name: "s1", IP: "127.0.0.11", Server: true},
		{Name: "s2", IP: "127.0.0.12", Server: true},
		{Name: "s3", IP: "127.0.0.13", Server: true},
		{Name: "c1", IP: "127.0.0.14"},
	}}}
}

var nextID int64

func mkop(kind, actor, node string, inv, comp float64, result string, f ...func(*Op)) Op {
	nextID++
	o := Op{ID: nextID, Kind: kind, Actor: actor, Node: node, Invoke: sec(inv), Complete: sec(comp), Result: result}
	for _, fn := range f {
		fn(&o)
	}
	return o
}

func served(value int64, token uint64, owner string) func(*Op) {
	return func(o *Op) { o.Value, o.Token, o.Owner = value, token, owner }
}

func placed(token uint64, owner string, existing bool) func(*Op) {
	return func(o *Op) { o.Token, o.Owner, o.Existing = token, owner, existing }
}

func ev(t float64, kind, node string) NemesisEvent {
	return NemesisEvent{Time: sec(t), Kind: kind, Node: node}
}

func netEv(t float64, s NetState) NemesisEvent {
	return NemesisEvent{Time: sec(t), Kind: EvNet, Net: &s}
}

func activation(kind, actor, node string, token uint64, t float64, value int64) Activation {
	return Activation{Kind: kind, Actor: actor, Node: node, Token: token, Mono: sec(t), Value: value}
}

func view(node string, t float64, epoch, index uint64, members ...MemberBrief) ViewObs {
	return ViewObs{Node: node, Sent: sec(t) - 1, Time: sec(t), Epoch: epoch, Index: index, Members: members}
}

func mb(id, status string, inc uint64) MemberBrief {
	return MemberBrief{ID: id, Status: status, Incarnation: inc}
}

func allActive() []MemberBrief {
	return []MemberBrief{mb("c1", "active", 1), mb("s1", "active", 1), mb("s2", "active", 1), mb("s3", "active", 1)}
}

// expect runs check on a clean history and on the same history with the
// bug injected, and wants the second to fail with a message containing
// want.
func expect(t *testing.T, check func(*History) Result, clean func() *History, bug func(*History), want string) {
	t.Helper()
	h := clean()
	if r := check(h); !r.OK() {
		t.Fatalf("clean history fails:\n%s", Report(h, []Result{r}))
	}
	bug(h)
	r := check(h)
	if r.OK() {
		t.Fatalf("history with the violation passes (notes %v)", r.Notes)
	}
	found := false
	for _, v := range r.Violations {
		if strings.Contains(v.Msg, want) {
			found = true
		}
	}
	if !found {
		t.Fatalf("violation %q not reported; got:\n%s", want, Report(h, []Result{r}))
	}
	t.Logf("caught: %s", r.Violations[0].Msg)
}

func TestCheckNoSplitBrain(t *testing.T) {
	clean := func() *History {
		h := base()
		h.Statuses = []StatusObs{
			{Node: "s1", Time: sec(1), Term: 2, IsLeader: true},
			{Node: "s2", Time: sec(2), Term: 2},
			{Node: "s1", Time: sec(3), Term: 2, IsLeader: true}, // a cut-off old leader still thinks it leads
			{Node: "s2", Time: sec(4), Term: 3, IsLeader: true},
		}
		return h
	}
	expect(t, CheckNoSplitBrain, clean, func(h *History) {
		h.Statuses = append(h.Statuses, StatusObs{Node: "s3", Time: sec(5), Term: 3, IsLeader: true})
	}, "term 3 has 2 leaders")
}

func TestCheckQuorumGated_MinorityCommit(t *testing.T) {
	clean := func() *History {
		h := base()
		h.Nemesis = []NemesisEvent{netEv(10, Partition([]string{"s1", "c1"}, []string{"s2", "s3"})), netEv(20, NetState{}),
			netEv(21, Bridge([]string{"c1"}, "s2", []string{"s1", "s3"}))}
		h.Ops = []Op{
			mkop(OpPlace, "a", "s2", 12, 12.1, ResultOK, placed(50, "s3", false)),   // majority side
			mkop(OpPlace, "b", "s1", 9.5, 10.5, ResultOK, placed(40, "s1", false)),  // began before the cut
			mkop(OpPlace, "c", "c1", 12, 17, ResultUnknown),                         // no answer
			mkop(OpPlace, "d", "c1", 12, 12.1, ResultOK, placed(30, "s1", true)),    // existing: no commit
			mkop(OpPlace, "e", "s1", 19.5, 20.5, ResultOK, placed(60, "s1", false)), // spans the heal
			mkop(OpPlace, "h", "c1", 22, 22.1, ResultOK, placed(63, "s2", false)),   // bridge: c1 reaches s1 through s2
			mkop(OpMigrate, "a", "s3", 13, 13.2, ResultOK, func(o *Op) { o.MigState, o.MigID, o.Target, o.Token = "committed", 70, "s2", 71 }),
		}
		return h
	}
	expect(t, CheckQuorumGated, clean, func(h *History) {
		h.Ops = append(h.Ops, mkop(OpPlace, "f", "c1", 12, 12.2, ResultOK, placed(61, "c1", false)))
	}, "could reach only a minority")
	// A dead voter counts as unreachable too.
	expect(t, CheckQuorumGated, func() *History {
		h := base()
		h.Nemesis = []NemesisEvent{ev(1, EvStart, "s2"), ev(10, EvKill, "s2"), netEv(10, Isolated("s3", []string{"s1", "s2", "s3", "c1"}))}
		return h
	}, func(h *History) {
		h.Ops = append(h.Ops, mkop(OpPlace, "g", "s1", 12, 12.2, ResultOK, placed(62, "s1", false)))
	}, "could reach only a minority")
}

func TestCheckQuorumGated_ForkedIndexAndEpoch(t *testing.T) {
	clean := func() *History {
		h := base()
		h.Ops = []Op{
			mkop(OpPlace, "a", "s1", 1, 1.1, ResultOK, placed(50, "s1", false)),
			mkop(OpIncr, "a", "s2", 2, 2.1, ResultOK, served(1, 50, "s1")),
		}
		h.Statuses = []StatusObs{{Node: "s1", Time: sec(1), Epoch: 4, ViewIndex: 20, Ready: true}, {Node: "s2", Time: sec(1), Epoch: 4, ViewIndex: 20, Ready: true}}
		return h
	}
	expect(t, CheckQuorumGated, clean, func(h *History) {
		h.Ops = append(h.Ops, mkop(OpLookup, "a", "s3", 3, 3.1, ResultOK, func(o *Op) { o.Found, o.Token, o.Owner = true, 50, "s2" }))
	}, "token 50 on two nodes")
	expect(t, CheckQuorumGated, clean, func(h *History) {
		h.Statuses = append(h.Statuses, StatusObs{Node: "s3", Time: sec(2), Epoch: 4, ViewIndex: 23, Ready: true})
	}, "epoch 4 was committed at 2 different indexes")
	expect(t, CheckQuorumGated, clean, func(h *History) {
		h.Views = []ViewObs{view("s1", 1, 5, 30, allActive()...), view("s2", 1, 5, 30, mb("s1", "failed", 1))}
	}, "epoch 5 has 2 different member lists")
}

func TestCheckMonotonicEpoch(t *testing.T) {
	clean := func() *History {
		h := base()
		h.Statuses = []StatusObs{
			{Node: "s1", Sent: sec(0.9), Time: sec(1), Term: 2, Epoch: 3, Ready: true},
			{Node: "s1", Sent: sec(1.9), Time: sec(2), Term: 2, Epoch: 4, Ready: true},
			{Node: "s1", Sent: sec(2.9), Time: sec(3), Term: 3, Epoch: 1, Ready: false}, // restarting: not ready
			{Node: "s1", Sent: sec(3.9), Time: sec(4), Term: 3, Epoch: 5, Ready: true},
		}
		return h
	}
	expect(t, CheckMonotonicEpoch, clean, func(h *History) {
		h.Statuses = append(h.Statuses, StatusObs{Node: "s1", Sent: sec(4.9), Time: sec(5), Term: 3, Epoch: 4, Ready: true})
	}, "s1's epoch went back from 5 to 4")
	expect(t, CheckMonotonicEpoch, clean, func(h *History) {
		h.Statuses = append(h.Statuses, StatusObs{Node: "s1", Sent: sec(4.9), Time: sec(5), Term: 2, Epoch: 5, Ready: true})
	}, "s1's term went back from 3 to 2")
	expect(t, CheckMonotonicEpoch, clean, func(h *History) {
		h.Views = []ViewObs{view("s2", 1, 6, 10), view("s2", 2, 5, 9)}
	}, "s2's epoch went back from 6 to 5")
}

func TestCheckSingleActivation(t *testing.T) {
	clean := func() *History {
		h := base()
		h.Nemesis = []NemesisEvent{ev(0, EvStart, "s1"), ev(0, EvStart, "s2"), ev(2.5, EvKill, "s2"), ev(4, EvStop, "s1"), ev(10, EvCont, "s1")}
		h.Activations = []Activation{
			activation("activate", "a", "s1", 5, 1, 0), activation("deactivate", "a", "s1", 5, 2, 3),
			activation("activate", "a", "s2", 9, 2.1, 3),    // migrated
			activation("activate", "a", "s3", 12, 3, 0),     // s2 was killed at 2.5
			activation("activate", "b", "s1", 7, 1, 0),      // s1 stopped at 4 …
			activation("activate", "b", "c1", 20, 6, 0),     // … b re-placed at 6 …
			activation("deactivate", "b", "s1", 7, 10.3, 0), // … s1 drops it 0.3s after waking
		}
		return h
	}
	expect(t, CheckSingleActivation, clean, func(h *History) {
		h.Activations = append(h.Activations, activation("activate", "a", "c1", 14, 3.5, 0))
	}, "a active on s3 and c1 at the same time")
	expect(t, CheckSingleActivation, clean, func(h *History) {
		h.Activations[6].Mono = sec(12) // s1 kept b 2s after waking
	}, "b active on c1 and s1 at the same time")
	expect(t, CheckSingleActivation, clean, func(h *History) {
		h.Activations = append(h.Activations, activation("activate", "c", "s1", 30, 20, 0), activation("deactivate", "c", "s1", 30, 21, 0),
			activation("activate", "c", "s2", 30, 22, 0))
	}, "token 30 activated on two nodes")
}

func TestCheckPlacementConsistency(t *testing.T) {
	clean := func() *History {
		h := base()
		v := view("s1", 1, 4, 20, mb("c1", "active", 1), mb("s1", "active", 1), mb("s2", "leaving", 1), mb("s3", "failed", 1))
		h.Snapshots = []Snapshot{{Node: "s1", Time: sec(1), View: v, Placements: []PlacementBrief{
			{Actor: "a", Node: "s1", Token: 5, State: "active", Incarnation: 1},
			{Actor: "b", Node: "s2", Token: 6, State: "migrating", Incarnation: 1},
		}}}
		return h
	}
	expect(t, CheckPlacementConsistency, clean, func(h *History) {
		h.Snapshots[0].Placements = append(h.Snapshots[0].Placements, PlacementBrief{Actor: "c", Node: "s3", Token: 7, State: "active", Incarnation: 1})
	}, "placed on s3: status failed")
	expect(t, CheckPlacementConsistency, clean, func(h *History) {
		h.Snapshots[0].Placements = append(h.Snapshots[0].Placements, PlacementBrief{Actor: "d", Node: "c1", Token: 8, State: "active", Incarnation: 0})
	}, "placed on c1: incarnation 1, placement made for 0")
}

func TestCheckLeaseSafety(t *testing.T) {
	clean := func() *History {
		h := base()
		h.Nemesis = []NemesisEvent{ev(0, EvStart, "s1"), ev(0, EvStart, "s2"), ev(3, EvStop, "s1"), ev(12, EvCont, "s1")}
		h.Activations = []Activation{
			activation("activate", "a", "s1", 5, 1, 0),
			activation("activate", "a", "s2", 9, 9, 0), // re-placed while s1 is stopped
			activation("deactivate", "a", "s1", 5, 12.1, 2),
			activation("activate", "b", "s2", 20, 1, 0), activation("deactivate", "b", "s2", 20, 4, 0), // fenced in time
			activation("activate", "b", "c1", 25, 8, 0),
		}
		h.Ops = []Op{
			mkop(OpIncr, "a", "s3", 2, 2.1, ResultOK, served(2, 5, "s1")),
			mkop(OpIncr, "a", "s3", 10, 10.1, ResultOK, served(1, 9, "s2")),
		}
		return h
	}
	expect(t, CheckLeaseSafety, clean, func(h *History) {
		h.Ops = append(h.Ops, mkop(OpGet, "a", "s1", 12.05, 12.08, ResultOK, served(2, 5, "s1")))
	}, "s1 served get of a under token 5 after token 9 was activated on s2")
	expect(t, CheckLeaseSafety, clean, func(h *History) {
		h.Activations[4].Mono = sec(9) // s2, running, kept b past its re-placement at 8
	}, "while s2, running, still hosted it")
}

func TestCheckMigrationAtomicity(t *testing.T) {
	clean := func() *History {
		h := base()
		h.Migrations = []MigrationRec{
			{Server: "s1", ID: 10, Actor: "a", From: "s1", To: "s2", OldToken: 5, NewToken: 11, State: "committed"},
			{Server: "s2", ID: 10, Actor: "a", From: "s1", To: "s2", OldToken: 5, NewToken: 11, State: "committed"},
			{Server: "s1", ID: 20, Actor: "b", From: "s2", To: "s3", OldToken: 7, NewToken: 21, State: "aborted"},
		}
		h.Activations = []Activation{
			activation("activate", "a", "s1", 5, 1, 0), activation("deactivate", "a", "s1", 5, 2, 4), activation("activate", "a", "s2", 11, 2.1, 4),
			activation("activate", "b", "s2", 7, 1, 0), activation("deactivate", "b", "s2", 7, 3, 2), activation("activate", "b", "s2", 21, 3.5, 2),
		}
		h.Ops = []Op{
			mkop(OpMigrate, "a", "c1", 1.9, 2.2, ResultOK, func(o *Op) {
				o.MigState, o.MigID, o.Target, o.From, o.OldToken, o.Token = "committed", 10, "s2", "s1", 5, 11
			}),
			mkop(OpGet, "a", "s1", 30, 30.1, ResultOK, served(4, 11, "s2"), func(o *Op) { o.Process = FinalProcess }),
		}
		return h
	}
	expect(t, CheckMigrationAtomicity, clean, func(h *History) {
		h.Migrations = append(h.Migrations, MigrationRec{Server: "s1", ID: 30, Actor: "c", From: "s1", To: "s2", OldToken: 8, State: "running"})
	}, "still \"running\"")
	expect(t, CheckMigrationAtomicity, clean, func(h *History) {
		h.Activations[2].Value = 0 // the target came up empty
	}, "handed over value 4 (token 5) but s2 activated token 11 with 0")
	expect(t, CheckMigrationAtomicity, clean, func(h *History) {
		h.Migrations[1].State = "aborted"
	}, "s1 says committed (token 11), s2 says aborted")
	expect(t, CheckMigrationAtomicity, clean, func(h *History) {
		h.Ops = append(h.Ops, mkop(OpGet, "b", "s1", 30, 45, ResultUnknown, func(o *Op) { o.Process = FinalProcess }))
	}, "b is stranded")
}

func TestCheckNoLostCommits(t *testing.T) {
	clean := func() *History {
		h := base()
		h.Nemesis = []NemesisEvent{ev(0, EvStart, "s2"), ev(5, EvKill, "s2"), ev(15, EvStart, "s2")}
		h.Ops = []Op{
			mkop(OpPlace, "p", "s1", 1, 1.1, ResultOK, placed(10, "s1", false)),
			mkop(OpPlace, "q", "s1", 1, 1.1, ResultOK, placed(11, "s2", false)), // s2 dies later: q orphaned
			mkop(OpIncr, "a", "s1", 2, 2.1, ResultOK, served(1, 12, "s2")),
			mkop(OpIncr, "a", "s1", 3, 3.1, ResultOK, served(2, 12, "s2")),
			mkop(OpIncr, "a", "s1", 12, 12.1, ResultOK, served(1, 30, "s3")), // reset after s2's crash
			mkop(OpLookup, "a", "s3", 13, 13.1, ResultOK, func(o *Op) { o.Found, o.Token, o.Owner, o.Consistent = true, 30, "s3", true }),
		}
		h.Activations = []Activation{activation("activate", "a", "s2", 12, 1.9, 0), activation("activate", "a", "s3", 30, 11.9, 0)}
		h.Final = &Final{Converged: true, Leader: "s1", Placements: map[string][]PlacementBrief{"s1": {
			{Actor: "p", Node: "s1", Token: 10, State: "active", Incarnation: 1},
			{Actor: "a", Node: "s3", Token: 30, State: "active", Incarnation: 1},
		}}}
		return h
	}
	expect(t, CheckNoLostCommits, clean, func(h *History) {
		h.Final.Placements["s1"] = h.Final.Placements["s1"][1:]
	}, "p was acknowledged on s1 with token 10 but is not placed at the end")
	expect(t, CheckNoLostCommits, clean, func(h *History) {
		h.Ops = append(h.Ops, mkop(OpLookup, "a", "c1", 14, 14.1, ResultOK, func(o *Op) { o.Found, o.Token, o.Owner, o.Consistent = true, 12, "s2", true }))
	}, "consistent lookup of a returned token 12 after token 30 was acknowledged")
	expect(t, CheckNoLostCommits, clean, func(h *History) {
		h.Nemesis = []NemesisEvent{ev(0, EvStart, "s2")} // no crash: the reset lost increments
	}, "a started again from zero with token 30")
}

func TestCheckConvergence(t *testing.T) {
	clean := func() *History {
		h := base()
		ps := []PlacementBrief{{Actor: "a", Node: "s1", Token: 5, State: "active", Incarnation: 1}}
		h.Final = &Final{HealedAt: sec(10), ConvergedAt: sec(14), Converged: true, Leader: "s1", Live: []string{"s1", "s2", "s3", "c1"},
			View:       view("s1", 15, 9, 40, allActive()...),
			Placements: map[string][]PlacementBrief{"s1": ps, "s2": ps, "s3": ps}}
		return h
	}
	expect(t, CheckConvergence, clean, func(h *History) {
		h.Final.Converged, h.Final.Detail = false, "s2: epoch 7"
	}, "did not converge")
	expect(t, CheckConvergence, clean, func(h *History) {
		h.Final.Placements["s3"] = nil
	}, "s3's final placement table differs")
	expect(t, CheckConvergence, clean, func(h *History) {
		h.Final.View.Members[0].Status = "failed"
	}, "c1 is live but not Active")
}

func TestCheckJoinIsReal(t *testing.T) {
	clean := func() *History {
		h := base()
		h.Nemesis = []NemesisEvent{ev(0, EvStart, "c1"), ev(0, EvStart, "s1"), ev(5, EvLeaveBegin, "c1"), ev(7, EvExit, "c1"), ev(10, EvStart, "c1"),
			ev(20, EvKill, "s1"), ev(25, EvStart, "s1")}
		h.Activations = []Activation{activation("activate", "a", "c1", 5, 1, 0), activation("deactivate", "a", "c1", 5, 6, 2),
			activation("activate", "a", "s1", 8, 6.1, 2)}
		h.Migrations = []MigrationRec{{Server: "s1", ID: 7, Actor: "a", From: "c1", To: "s1", OldToken: 5, NewToken: 8, State: "committed"}}
		h.Views = []ViewObs{
			view("s1", 1, 3, 10, allActive()...),
			view("s1", 8, 5, 14, mb("c1", "left", 1), mb("s1", "active", 1), mb("s2", "active", 1), mb("s3", "active", 1)),
			view("s2", 12, 7, 18, mb("c1", "active", 2), mb("s1", "active", 1), mb("s2", "active", 1), mb("s3", "active", 1)),
			view("s2", 30, 10, 25, mb("c1", "active", 2), mb("s1", "active", 2), mb("s2", "active", 1), mb("s3", "active", 1)),
		}
		return h
	}
	expect(t, CheckJoinIsReal, clean, func(h *History) {
		h.Activations = h.Activations[:1] // c1 never deactivated a before exiting
	}, "c1 left gracefully while still hosting a")
	expect(t, CheckJoinIsReal, clean, func(h *History) {
		h.Migrations = nil // released, then placed afresh
		h.Activations[2].Value = 0
	}, "c1's graceful leave dropped a (token 5, value 2) instead of migrating it")
	expect(t, CheckJoinIsReal, clean, func(h *History) {
		h.Views[1].Members[0].Status = "failed"
	}, "was committed Failed, not Left")
	expect(t, CheckJoinIsReal, clean, func(h *History) {
		h.Views = h.Views[:3] // s1 never came back
	}, "s1 restarted at 25000000000 but was never seen Active")
}

func TestCheckLinearizable(t *testing.T) {
	clean := func() *History {
		h := base()
		h.Ops = []Op{
			mkop(OpIncr, "a", "s1", 1, 1.1, ResultOK, served(1, 5, "s1")),
			mkop(OpIncr, "a", "s2", 1.05, 1.2, ResultOK, served(2, 5, "s1")), // concurrent
			mkop(OpIncr, "a", "s3", 2, 7, ResultUnknown),                     // may have happened
			mkop(OpGet, "a", "s1", 3, 3.1, ResultOK, served(3, 5, "s1")),     // it did
			mkop(OpIncr, "a", "s1", 4, 4.1, ResultOK, served(4, 9, "s2")),    // migrated: continues
			mkop(OpIncr, "a", "s1", 6, 6.1, ResultOK, served(1, 15, "s3")),   // re-placed: new lineage
			mkop(OpGet, "a", "s2", 6.5, 6.6, ResultOK, served(1, 15, "s3")),
		}
		h.Migrations = []MigrationRec{{Server: "s1", ID: 8, Actor: "a", From: "s1", To: "s2", OldToken: 5, NewToken: 9, State: "committed"}}
		return h
	}
	expect(t, CheckLinearizable, clean, func(h *History) {
		h.Ops = append(h.Ops, mkop(OpGet, "a", "s1", 6.7, 6.8, ResultOK, served(0, 15, "s3")))
	}, "not a linearizable counter")
	expect(t, CheckLinearizable, clean, func(h *History) {
		h.Ops[4].Value = 1 // the migration lost the state
	}, "not a linearizable counter")
	expect(t, CheckLinearizable, clean, func(h *History) {
		h.Ops = append(h.Ops, mkop(OpGet, "a", "c1", 8, 8.1, ResultOK, served(4, 9, "s2")))
	}, "ran under token 9 after an operation under the newer token 15")
}

func TestNetStates(t *testing.T) {
	all := []string{"s1", "s2", "s3", "c1"}
	iso := Isolated("s2", all)
	if !iso.Cut("s2", "s1") || !iso.Cut("c1", "s2") || iso.Cut("s1", "s3") || len(iso.Cuts) != 6 {
		t.Fatalf("isolate s2: %v", iso)
	}
	br := Bridge([]string{"s1"}, "s2", []string{"s3", "c1"})
	if br.Involves("s2") || !br.Cut("s1", "s3") || !br.Cut("c1", "s1") || br.Cut("s1", "s2") || br.Cut("s2", "c1") {
		t.Fatalf("bridge s1-s2-{s3,c1}: %v", br)
	}
	ow := OneWay([2]string{"s1", "s2"}, [2]string{"s1", "s2"}, [2]string{"s3", "s3"})
	if len(ow.Cuts) != 1 || !ow.Cut("s1", "s2") || ow.Cut("s2", "s1") {
		t.Fatalf("one-way s1→s2: %v", ow)
	}
	if got := reachableVoters(ow, "s1", []string{"s1", "s2", "s3"}); got != 2 {
		t.Fatalf("s1 reaches %d voters under a one-way cut to s2, want 2 (itself and s3)", got)
	}
	if l := Loss(10); !l.Involves("c1") || l.Cut("s1", "s2") || l.String() != "10% loss" {
		t.Fatalf("loss: %v", l)
	}
}

func TestSegmentsCutByFaults(t *testing.T) {
	h := base()
	h.Nemesis = []NemesisEvent{ev(0, EvStart, "s1"), ev(2, EvStop, "s1"), ev(4, EvCont, "s1"), ev(8, EvKill, "s1"), ev(9, EvStart, "s1")}
	h.Activations = []Activation{activation("activate", "a", "s1", 5, 1, 0), activation("activate", "a", "s1", 9, 10, 0), activation("deactivate", "a", "s1", 9, 11, 3)}
	segs := Segments(h)
	want := []string{
		"a on s1 token 5 [1000000000..2000000000] (stopped)",
		"a on s1 token 5 [5000000000..8000000000] (dead)",
		"a on s1 token 9 [10000000000..11000000000] (deactivate)",
	}
	if len(segs) != len(want) {
		t.Fatalf("segments %v, want %v", segs, want)
	}
	for i, s := range segs {
		if s.String() != want[i] {
			t.Errorf("segment %d: %s, want %s", i, s, want[i])
		}
	}
}

// TestRecheckHistory re-runs every checker on a saved history:
// KELPIE_RECHECK=/path/to/history.jsonl go test -run TestRecheckHistory -v ./integration/nemesis/
func TestRecheckHistory(t *testing.T) {
	path := os.Getenv("KELPIE_RECHECK")
	if path == "" {
		t.Skip("set KELPIE_RECHECK to a history.jsonl to re-run the checkers on it")
	}
	h, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	results := RunCheckers(h)
	t.Logf("%s seed %d: %d ops\n%s", h.Meta.Scenario, h.Meta.Seed, len(h.Ops), Summary(results))
	if rep := Report(h, results); rep != "" {
		t.Error(rep)
	}
}

func TestCheckQuorumGated_LateNoQuorum(t *testing.T) {
	clean := func() *History {
		h := base()
		h.Meta.Start, h.Meta.WallStart = sec(100), sec(5000) // wall = mono + 4900s
		h.Ops = []Op{
			mkop(OpMigrate, "a", "s1", 110, 115, ResultUnknown, func(o *Op) { o.Code, o.Target = "no_quorum", "c1" }),
			mkop(OpMigrate, "a", "s2", 120, 120.1, ResultOK, func(o *Op) { o.Target, o.MigState, o.MigID = "c1", "committed", 40 }),
		}
		h.Migrations = []MigrationRec{
			{Server: "s1", ID: 30, Actor: "a", From: "s2", To: "c1", OldToken: 20, NewToken: 31, State: "committed", StartedAt: sec(5012)}, // during the call
			{Server: "s1", ID: 40, Actor: "a", From: "c1", To: "s3", OldToken: 31, NewToken: 41, State: "committed", StartedAt: sec(5020)}, // another target
		}
		return h
	}
	expect(t, CheckQuorumGated, clean, func(h *History) {
		h.Migrations = append(h.Migrations, MigrationRec{Server: "s1", ID: 50, Actor: "a", From: "s3", To: "c1", OldToken: 41, NewToken: 51,
			State: "aborted", Reason: "handoff: context canceled", StartedAt: sec(5018)}) // 3s after the call returned
	}, "failed with no_quorum, yet migration 50 of it started 3.0s after the call returned")

	// A concurrent call for the same move whose outcome is unknown, invoked
	// just before the refused one, may have started the migration.
	h := clean()
	h.Ops = append(h.Ops, mkop(OpMigrate, "a", "c1", 109.9, 116, ResultUnknown, func(o *Op) { o.Code, o.Target = "unknown_outcome", "c1" }))
	h.Migrations = append(h.Migrations, MigrationRec{Server: "s1", ID: 50, Actor: "a", From: "s3", To: "c1", OldToken: 41, NewToken: 51,
		State: "committed", StartedAt: sec(5018)})
	var r Result
	checkLateNoQuorum(&r, h)
	if len(r.Violations) != 0 {
		t.Fatalf("a migration an unknown-outcome call may have started was blamed on the refused one: %v", r.Violations)
	}
}
