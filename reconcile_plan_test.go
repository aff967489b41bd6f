package cluster

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/kelpie/cluster/consensus"
	"github.com/kelpie/cluster/gossip"
)

func gm(name string, st gossip.Status, boot string, role string) gossip.Member {
	return gossip.Member{Name: name, Addr: "127.0.0.9:7501", Status: st,
		Tags: gossip.Tags{Role: role, HTTPAddr: "127.0.0.9:7500", Boot: boot}}
}

func rec(id string, st consensus.Status, boot string, role consensus.Role) consensus.Member {
	return consensus.Member{ID: id, GossipAddr: "127.0.0.9:7501", HTTPAddr: "127.0.0.9:7500", Role: role, Status: st, Boot: boot, Incarnation: 1}
}

// steps renders a plan as "id:status" strings (boot cleared shown as "id:status/-").
func steps(cs []consensus.Change) []string {
	var out []string
	for _, c := range cs {
		s := fmt.Sprintf("%s:%s", c.Member.ID, c.Member.Status)
		if c.Member.Boot == "" {
			s += "/-"
		}
		out = append(out, s)
	}
	return out
}

func TestPlanReconcile(t *testing.T) {
	const (
		alive  = gossip.StatusAlive
		failed = gossip.StatusFailed
		left   = gossip.StatusLeft
	)
	now := time.Unix(1000, 0)
	client, server := consensus.RoleClient, consensus.RoleServer
	cases := []struct {
		name     string
		view     []consensus.Member
		gossip   []gossip.Member
		inRaft   []string
		elapsed  time.Duration // since the leader's gossip started
		absentAt map[string]time.Duration
		want     []string
	}{
		{name: "new client joins and activates in one batch", gossip: []gossip.Member{gm("a", alive, "b1", "client")}, want: []string{"a:joining", "a:active"}},
		{name: "new server joins, waits for raft", gossip: []gossip.Member{gm("s", alive, "b1", "server")}, want: []string{"s:joining"}},
		{name: "joining client activates", view: []consensus.Member{rec("a", consensus.StatusJoining, "b1", client)},
			gossip: []gossip.Member{gm("a", alive, "b1", "client")}, want: []string{"a:active"}},
		{name: "joining server waits for raft", view: []consensus.Member{rec("s", consensus.StatusJoining, "b1", server)},
			gossip: []gossip.Member{gm("s", alive, "b1", "server")}, want: nil},
		{name: "joining server in raft activates", view: []consensus.Member{rec("s", consensus.StatusJoining, "b1", server)},
			gossip: []gossip.Member{gm("s", alive, "b1", "server")}, inRaft: []string{"s"}, want: []string{"s:active"}},
		{name: "active in sync", view: []consensus.Member{rec("a", consensus.StatusActive, "b1", client)},
			gossip: []gossip.Member{gm("a", alive, "b1", "client")}, want: nil},
		{name: "active fails", view: []consensus.Member{rec("a", consensus.StatusActive, "b1", client)},
			gossip: []gossip.Member{gm("a", failed, "b1", "client")}, want: []string{"a:failed"}},
		{name: "failed comes back as new incarnation", view: []consensus.Member{rec("a", consensus.StatusFailed, "b1", client)},
			gossip: []gossip.Member{gm("a", alive, "b1", "client")}, want: []string{"a:left/-", "a:joining", "a:active"}},
		{name: "restarted before detection", view: []consensus.Member{rec("a", consensus.StatusActive, "b1", client)},
			gossip: []gossip.Member{gm("a", alive, "b2", "client")}, want: []string{"a:failed", "a:left/-", "a:joining", "a:active"}},
		{name: "server restarted before detection", view: []consensus.Member{rec("s", consensus.StatusActive, "b1", server)},
			gossip: []gossip.Member{gm("s", alive, "b2", "server")}, inRaft: []string{"s"}, want: []string{"s:failed", "s:left/-", "s:joining"}},
		{name: "left on purpose stays left while alive", view: []consensus.Member{rec("a", consensus.StatusLeft, "b1", client)},
			gossip: []gossip.Member{gm("a", alive, "b1", "client")}, want: nil},
		{name: "left then new process rejoins", view: []consensus.Member{rec("a", consensus.StatusLeft, "b1", client)},
			gossip: []gossip.Member{gm("a", alive, "b2", "client")}, want: []string{"a:joining", "a:active"}},
		{name: "restarted while leaving", view: []consensus.Member{rec("a", consensus.StatusLeaving, "b1", client)},
			gossip: []gossip.Member{gm("a", alive, "b2", "client")}, want: []string{"a:left", "a:joining", "a:active"}},
		{name: "still leaving", view: []consensus.Member{rec("a", consensus.StatusLeaving, "b1", client)},
			gossip: []gossip.Member{gm("a", alive, "b1", "client")}, want: nil},
		{name: "restarted while joining", view: []consensus.Member{rec("a", consensus.StatusJoining, "b1", client)},
			gossip: []gossip.Member{gm("a", alive, "b2", "client")}, want: []string{"a:failed", "a:left/-", "a:joining", "a:active"}},
		{name: "gossip leave of active", view: []consensus.Member{rec("a", consensus.StatusActive, "b1", client)},
			gossip: []gossip.Member{gm("a", left, "b1", "client")}, want: []string{"a:leaving", "a:left"}},
		{name: "gossip leave of joining", view: []consensus.Member{rec("a", consensus.StatusJoining, "b1", client)},
			gossip: []gossip.Member{gm("a", left, "b1", "client")}, want: []string{"a:failed", "a:left/-"}},
		{name: "leaving member dies", view: []consensus.Member{rec("a", consensus.StatusLeaving, "b1", client)},
			gossip: []gossip.Member{gm("a", failed, "b1", "client")}, want: []string{"a:left"}},
		{name: "metadata change", view: []consensus.Member{rec("a", consensus.StatusActive, "b1", client)},
			gossip: []gossip.Member{func() gossip.Member { g := gm("a", alive, "b1", "client"); g.Tags.Zone = "z2"; return g }()},
			want:   []string{"a:active"}},
		{name: "absent within grace: nothing", view: []consensus.Member{rec("a", consensus.StatusActive, "b1", client)},
			elapsed: time.Second, want: nil},
		{name: "absent after grace fails", view: []consensus.Member{rec("a", consensus.StatusActive, "b1", client)},
			elapsed: time.Minute, want: []string{"a:failed"}},
		{name: "absent failed waits for reap", view: []consensus.Member{rec("a", consensus.StatusFailed, "b1", client)},
			elapsed: time.Minute, absentAt: map[string]time.Duration{"a": time.Second}, want: nil},
		{name: "absent failed reaped", view: []consensus.Member{rec("a", consensus.StatusFailed, "b1", client)},
			elapsed: time.Minute, absentAt: map[string]time.Duration{"a": 2 * time.Minute}, want: []string{"a:left/-"}},
		{name: "self never marked absent", view: []consensus.Member{rec("me", consensus.StatusActive, "b1", server)},
			elapsed: time.Hour, want: nil},
		{name: "batch sorted by id", gossip: []gossip.Member{gm("b", alive, "x", "client"), gm("a", alive, "y", "client")},
			want: []string{"a:joining", "a:active", "b:joining", "b:active"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := consensus.View{Epoch: 5, Index: 9, Members: tc.view}
			in := reconcileInput{View: v, Gossip: tc.gossip, InRaft: map[string]bool{}, Self: "me",
				Now: now, Started: now.Add(-tc.elapsed), Grace: 30 * time.Second,
				FailedAbsentSince: map[string]time.Time{}, ReapAfter: time.Minute}
			for _, id := range tc.inRaft {
				in.InRaft[id] = true
			}
			for id, d := range tc.absentAt {
				in.FailedAbsentSince[id] = now.Add(-d)
			}
			got := steps(planReconcile(in))
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("plan = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestPlanReconcileAppliesCleanly: whatever the planner proposes from any
// combination of committed and gossip status is accepted by the FSM (the
// planner never proposes an illegal transition).
func TestPlanReconcileAppliesCleanly(t *testing.T) {
	statuses := []consensus.Status{consensus.StatusNone, consensus.StatusJoining, consensus.StatusActive,
		consensus.StatusLeaving, consensus.StatusFailed, consensus.StatusLeft}
	gstatuses := []gossip.Status{gossip.StatusAlive, gossip.StatusLeaving, gossip.StatusLeft, gossip.StatusFailed}
	idx := uint64(1)
	for _, cs := range statuses {
		for _, gs := range append(gstatuses, -1) { // -1: absent from gossip
			for _, sameBoot := range []bool{true, false} {
				for _, role := range []string{"client", "server"} {
					fsm := consensus.NewFSM()
					var view []consensus.Member
					if cs != consensus.StatusNone {
						// Build the committed record through legal steps.
						path := map[consensus.Status][]consensus.Status{
							consensus.StatusJoining: {consensus.StatusJoining},
							consensus.StatusActive:  {consensus.StatusJoining, consensus.StatusActive},
							consensus.StatusLeaving: {consensus.StatusJoining, consensus.StatusActive, consensus.StatusLeaving},
							consensus.StatusFailed:  {consensus.StatusJoining, consensus.StatusFailed},
							consensus.StatusLeft:    {consensus.StatusJoining, consensus.StatusFailed, consensus.StatusLeft},
						}[cs]
						for _, s := range path {
							r := rec("a", s, "b1", consensus.Role(role))
							b, err := consensus.EncodeViewChange(consensus.ViewChange{Changes: []consensus.Change{{Member: r}}})
							if err != nil {
								t.Fatal(err)
							}
							res := fsm.ApplyCommand(idx, b)
							idx++
							if res.Err != nil {
								t.Fatalf("setup %s: %v", s, res.Err)
							}
						}
						view = fsm.View().Members
					}
					boot := "b1"
					if !sameBoot {
						boot = "b2"
					}
					var g []gossip.Member
					if gs >= 0 {
						g = []gossip.Member{gm("a", gs, boot, role)}
					}
					now := time.Unix(1000, 0)
					in := reconcileInput{View: consensus.View{Members: view}, Gossip: g, InRaft: map[string]bool{"a": true},
						Self: "me", Now: now, Started: now.Add(-time.Hour), Grace: time.Second,
						FailedAbsentSince: map[string]time.Time{"a": now.Add(-time.Hour)}, ReapAfter: time.Minute}
					plan := planReconcile(in)
					if len(plan) == 0 {
						continue
					}
					b, err := consensus.EncodeViewChange(consensus.ViewChange{Changes: plan, Reason: "reconcile"})
					if err != nil {
						t.Fatalf("committed %s gossip %v: encode: %v", cs, gs, err)
					}
					if res := fsm.ApplyCommand(idx, b); res.Err != nil {
						t.Errorf("committed %s, gossip %v, same boot %v, %s: plan %v rejected: %v", cs, gs, sameBoot, role, steps(plan), res.Err)
					}
					idx++
				}
			}
		}
	}
}

func TestHasQuorum(t *testing.T) {
	cases := []struct {
		reach, total int
		want         bool
	}{
		{2, 3, true}, {3, 5, true}, {1, 1, true}, {3, 3, true},
		{1, 3, false}, {2, 4, false}, {2, 5, false}, {0, 0, false}, {1, 2, false},
	}
	for _, c := range cases {
		if got := HasQuorum(c.reach, c.total); got != c.want {
			t.Errorf("HasQuorum(%d, %d) = %v, want %v", c.reach, c.total, got, c.want)
		}
	}
	err := error(&NoQuorumError{Reachable: 1, Total: 3})
	if err.Error() != "no quorum: 1 of 3 voters reachable" {
		t.Errorf("message %q", err.Error())
	}
}
