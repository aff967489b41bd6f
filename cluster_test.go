package cluster

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/kelpie/cluster/consensus"
)

// TestJoinIsReal_BootstrapExpect3: three servers with bootstrap-expect 3
// bootstrap exactly once, elect one leader, and commit a view with all three
// Active at epoch ≥ 1.
func TestJoinIsReal_BootstrapExpect3(t *testing.T) {
	tc := newTestCluster(t)
	ns := tc.startServers(3, nodeOpts{})

	boots, leaders := 0, 0
	for _, n := range ns {
		st := n.StatusInfo()
		if st.Bootstrapped {
			boots++
		}
		if st.IsLeader {
			leaders++
		}
		if st.Epoch < 1 || st.Members != 3 || st.SelfStatus != consensus.StatusActive || len(st.Voters) != 3 {
			t.Errorf("%s status: %+v", n.ID(), st)
		}
	}
	if boots != 1 {
		t.Errorf("raft bootstrapped %d times, want exactly 1", boots)
	}
	if leaders != 1 {
		t.Errorf("%d leaders, want 1", leaders)
	}
	if got := ns[0].StatusInfo().Voters; countVoters(got) != 3 {
		t.Errorf("voters %+v, want 3", got)
	}
}

// TestJoinIsReal_ClientsJoin: Join returns only once the client is Active in
// the committed view, and clients follow the same view (same epoch) as the
// servers through blocking queries.
func TestJoinIsReal_ClientsJoin(t *testing.T) {
	tc := newTestCluster(t)
	servers := tc.startServers(3, nodeOpts{})
	c1 := tc.start("c1", nodeOpts{})
	c2 := tc.start("c2", nodeOpts{})
	for _, c := range []*Node{c1, c2} {
		tc.join(c, tc.seed("s2"), 20*time.Second)
		// Join returned: the node must already see itself Active.
		m, ok := c.Self()
		if !ok || m.Status != consensus.StatusActive || m.Boot != c.Boot() {
			t.Fatalf("%s: Join returned but own record is %+v (found %v)", c.ID(), m, ok)
		}
		if err := c.ready(); err != nil {
			t.Errorf("%s not ready after Join: %v", c.ID(), err)
		}
	}
	all := append(servers, c1, c2)
	waitFor(t, 10*time.Second, "all five see one view", func() bool {
		return converged(all, statuses([]string{"s1", "s2", "s3", "c1", "c2"}, consensus.StatusActive))
	})
	// The client's copy came over HTTP blocking queries: check the API too.
	cl, err := NewClient(c1.HTTPAddr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	v, err := cl.View(ctx, 0, 0)
	if err != nil || v.Epoch != servers[0].View().Epoch {
		t.Fatalf("client view over HTTP: epoch %d err %v, servers at %d", v.Epoch, err, servers[0].View().Epoch)
	}
	// A blocking query returns promptly once the index moves.
	start := time.Now()
	done := make(chan consensus.View, 1)
	go func() {
		v2, _ := cl.View(ctx, v.Index, 4*time.Second)
		done <- v2
	}()
	c3 := tc.start("c3", nodeOpts{})
	tc.join(c3, tc.seed("s1"), 20*time.Second)
	v2 := <-done
	if v2.Index <= v.Index {
		t.Fatalf("blocking query returned index %d, not past %d", v2.Index, v.Index)
	}
	t.Logf("blocking query woke after %s", time.Since(start))

	// Followers ask servers for deltas: the answer names its base and
	// carries only what changed, and applied it gives the server's view.
	sc, err := NewClient(servers[0].HTTPAddr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	base, err := sc.View(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	c4 := tc.start("c4", nodeOpts{})
	tc.join(c4, tc.seed("s3"), 20*time.Second)
	var d viewDelta
	if _, err := sc.do(ctx, "GET", fmt.Sprintf("/v1/view?index=%d&delta=1&wait=4s", base.Index), nil, &d); err != nil {
		t.Fatal(err)
	}
	if d.Base != base.Index || d.Index <= base.Index || len(d.Members) == 0 || len(d.Members) >= len(base.Members) {
		t.Fatalf("delta answer: base %d index %d with %d records; want base %d, a newer index and only c4's change among %d members",
			d.Base, d.Index, len(d.Members), base.Index, len(base.Members))
	}
	for try := 0; ; try++ {
		got, err := sc.viewSince(ctx, base, 4*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		full, err := sc.View(ctx, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		if full.Index != got.Index && try < 3 {
			continue // another commit came in between
		}
		if !reflect.DeepEqual(full, got) {
			t.Fatalf("view from delta %+v, whole view %+v", got, full)
		}
		break
	}
}

// TestEventualConvergence_ClientFailure: a client that dies is committed
// Failed with exactly one more epoch, and every live node serves that epoch.
func TestEventualConvergence_ClientFailure(t *testing.T) {
	tc := newTestCluster(t)
	tc.startServers(3, nodeOpts{})
	c1 := tc.start("c1", nodeOpts{})
	tc.join(c1, tc.seed("s1"), 20*time.Second)
	c2 := tc.start("c2", nodeOpts{})
	tc.join(c2, tc.seed("s1"), 20*time.Second)
	waitFor(t, 10*time.Second, "converge", func() bool {
		return converged(tc.live(), statuses([]string{"c1", "c2"}, consensus.StatusActive))
	})
	before := tc.node("s1").View().Epoch

	tc.stop("c1")
	waitFor(t, 20*time.Second, "c1 committed Failed everywhere", func() bool {
		return converged(tc.live(), map[string]consensus.Status{"c1": consensus.StatusFailed, "c2": consensus.StatusActive})
	})
	v := tc.node("s1").View()
	if v.Epoch != before+1 {
		t.Errorf("epoch %d after one failure, want %d", v.Epoch, before+1)
	}
	if m, _ := v.Member("c1"); m.UpdatedEpoch != v.Epoch {
		t.Errorf("c1 record %+v not updated at epoch %d", m, v.Epoch)
	}
}

// TestJoinIsReal_GracefulLeaveRestoresVoters: a voter that leaves goes Left,
// leaves the Raft configuration, and a standby is promoted so the voter
// count is back to three.
func TestJoinIsReal_GracefulLeaveRestoresVoters(t *testing.T) {
	tc := newTestCluster(t)
	tc.startServers(3, nodeOpts{})
	s4 := tc.start("s4", nodeOpts{server: true})
	tc.join(s4, tc.seed("s1"), 20*time.Second)
	waitFor(t, 10*time.Second, "s4 is a standby", func() bool {
		l := tc.leader()
		if l == nil {
			return false
		}
		peers, _ := l.raft.Configuration()
		return len(peers) == 4 && countVoters(peers) == 3
	})

	// Leave with a voter that is not the leader (the leader case is below).
	var victim *Node
	for _, id := range []string{"s1", "s2", "s3"} {
		if n := tc.node(id); !n.raft.IsLeader() {
			victim = n
			break
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := victim.Leave(ctx); err != nil {
		t.Fatalf("leave %s: %v", victim.ID(), err)
	}
	if m, _ := victim.Self(); m.Status != consensus.StatusLeft {
		t.Errorf("after Leave, %s sees itself %s", victim.ID(), m.Status)
	}
	tc.stop(victim.ID())
	waitFor(t, 20*time.Second, "voters restored to 3 with s4 promoted", func() bool {
		l := tc.leader()
		if l == nil {
			return false
		}
		peers, _ := l.raft.Configuration()
		voters := map[string]bool{}
		for _, p := range peers {
			if p.Voter {
				voters[p.ID] = true
			}
		}
		return len(peers) == 3 && len(voters) == 3 && voters["s4"] && !voters[victim.ID()]
	})
	waitFor(t, 10*time.Second, "view shows leaver Left", func() bool {
		return converged(tc.live(), map[string]consensus.Status{victim.ID(): consensus.StatusLeft, "s4": consensus.StatusActive})
	})

	// Now the leader leaves: it hands leadership over first.
	old := tc.waitLeader()
	if err := old.Leave(ctx); err != nil {
		t.Fatalf("leader leave: %v", err)
	}
	tc.stop(old.ID())
	waitFor(t, 20*time.Second, "new leader, old leader Left and out of raft", func() bool {
		l := tc.leader()
		if l == nil {
			return false
		}
		peers, _ := l.raft.Configuration()
		for _, p := range peers {
			if p.ID == old.ID() {
				return false
			}
		}
		m, _ := l.View().Member(old.ID())
		return m.Status == consensus.StatusLeft
	})
}

// TestNoSplitBrain_LeaderCrash: the leader dies; a new leader with a higher
// term takes over, the committed view survives, and no node's epoch goes
// backwards (checked continuously by the harness).
func TestNoSplitBrain_LeaderCrash(t *testing.T) {
	tc := newTestCluster(t)
	tc.startServers(3, nodeOpts{})
	c1 := tc.start("c1", nodeOpts{})
	tc.join(c1, tc.seed("s1"), 20*time.Second)
	old := tc.waitLeader()
	oldTerm := old.raft.Stats().Term
	oldView := old.View()

	tc.stop(old.ID())
	nl := tc.waitLeader()
	if term := nl.raft.Stats().Term; term <= oldTerm {
		t.Fatalf("new leader term %d, old %d", term, oldTerm)
	}
	waitFor(t, 20*time.Second, "old leader committed Failed", func() bool {
		return converged(tc.live(), map[string]consensus.Status{old.ID(): consensus.StatusFailed, "c1": consensus.StatusActive})
	})
	v := nl.View()
	for _, m := range oldView.Members {
		if m.ID == old.ID() {
			continue
		}
		if got, ok := v.Member(m.ID); !ok || got.Status != m.Status || got.Incarnation != m.Incarnation {
			t.Errorf("member %s changed across failover: %+v → %+v", m.ID, m, got)
		}
	}
	if v.Epoch <= oldView.Epoch {
		t.Errorf("epoch %d not past %d", v.Epoch, oldView.Epoch)
	}
}

// TestQuorumGated_MinorityPartition: one of three voters is cut off. Its
// view-change attempts fail with ErrNoQuorum within the bound; the majority
// keeps committing; after the heal everyone converges on one view.
func TestQuorumGated_MinorityPartition(t *testing.T) {
	tc := newTestCluster(t)
	ns := tc.startServers(3, nodeOpts{})
	c1 := tc.start("c1", nodeOpts{})
	tc.join(c1, tc.seed("s1"), 20*time.Second)

	// Cut off the leader, the harder case: it must stop acting.
	minority := tc.waitLeader()
	var others []string
	for _, n := range tc.live() {
		if n != minority {
			others = append(others, tc.ip(n.ID()))
		}
	}
	tc.faults.Isolate(tc.ip(minority.ID()), others)
	cut := time.Now()

	// Step-down: the cut-off leader stops leading within about one leader
	// lease (raft's LeaderLeaseTimeout), not whenever the partition heals.
	waitFor(t, 5*time.Second, "isolated leader steps down", func() bool { return !minority.raft.IsLeader() })
	if d, lease := time.Since(cut), minority.cfg.Raft.LeaderLeaseTimeout; d > 4*lease+time.Second {
		t.Errorf("isolated leader stepped down after %s (lease %s)", d, lease)
	}

	waitFor(t, 15*time.Second, "majority elects a leader", func() bool {
		for _, n := range ns {
			if n != minority && n.raft.IsLeader() {
				return true
			}
		}
		return false
	})
	bound := minority.cfg.QuorumTimeout
	start := time.Now()
	err := minority.Leave(context.Background())
	took := time.Since(start)
	var nq *NoQuorumError
	if !errors.Is(err, ErrNoQuorum) || !errors.As(err, &nq) {
		t.Fatalf("minority Leave: got %v, want ErrNoQuorum", err)
	}
	if took > bound+time.Second {
		t.Errorf("minority Leave took %s, bound %s", took, bound)
	}
	t.Logf("minority Leave failed after %s: %v", took, err)
	if m, _ := minority.Self(); m.Status == consensus.StatusLeft {
		t.Errorf("minority applied its leave anyway")
	}
	// A direct commit attempt on the (old) leader fails too.
	m0, _ := minority.View().Member("c1")
	m0.Zone = "elsewhere"
	_, err = minority.commitLocal(context.Background(), consensus.ViewChange{Changes: []consensus.Change{{Member: m0}}, Reason: "test"})
	if !errors.Is(err, ErrNoQuorum) && !errors.Is(err, ErrNotLeader) {
		t.Errorf("minority commit: %v, want ErrNoQuorum or ErrNotLeader", err)
	}

	// The majority keeps committing: it marks the cut-off node Failed and
	// admits a new client.
	var majority []*Node
	for _, n := range tc.live() {
		if n != minority {
			majority = append(majority, n)
		}
	}
	c2 := tc.start("c2", nodeOpts{})
	tc.join(c2, []string{tc.node("c1").GossipAddr()}, 20*time.Second)
	majority = append(majority, c2)
	waitFor(t, 20*time.Second, "majority commits", func() bool {
		if !converged(majority, map[string]consensus.Status{"c2": consensus.StatusActive}) {
			return false
		}
		// Failed, or already Left once gossip reaped it.
		m, _ := majority[0].View().Member(minority.ID())
		return m.Status == consensus.StatusFailed || m.Status == consensus.StatusLeft
	})
	minorityEpoch := minority.View().Epoch
	if minorityEpoch >= majority[0].View().Epoch {
		t.Errorf("minority epoch %d not behind majority %d", minorityEpoch, majority[0].View().Epoch)
	}

	tc.faults.Heal()
	waitFor(t, 30*time.Second, "all converge after heal", func() bool {
		return converged(tc.live(), map[string]consensus.Status{minority.ID(): consensus.StatusActive, "c1": consensus.StatusActive, "c2": consensus.StatusActive})
	})
	m, _ := tc.node("c1").View().Member(minority.ID())
	if m.Incarnation != 2 {
		t.Errorf("healed node incarnation %d, want 2 (rejoined through Left/Joining)", m.Incarnation)
	}
}

// TestNoLostCommits_FullRestart: all servers stop and restart on the same
// data dirs; the committed view comes back (and no epoch is ever served
// lower than before).
func TestNoLostCommits_FullRestart(t *testing.T) {
	tc := newTestCluster(t)
	tc.startServers(3, nodeOpts{durable: true})
	c1 := tc.start("c1", nodeOpts{})
	tc.join(c1, tc.seed("s1"), 20*time.Second)
	waitFor(t, 10*time.Second, "converge", func() bool {
		return converged(tc.live(), statuses([]string{"s1", "s2", "s3", "c1"}, consensus.StatusActive))
	})
	before := tc.node("s1").View()
	tc.stop("c1")
	for _, id := range []string{"s1", "s2", "s3"} {
		tc.stop(id)
	}

	var ns []*Node
	for _, id := range []string{"s1", "s2", "s3"} {
		ns = append(ns, tc.start(id, nodeOpts{server: true, expect: 3, durable: true}))
	}
	for _, n := range ns {
		if n.mu.startIndex < before.Index {
			t.Errorf("%s: raft log on disk ends at %d, view was committed at %d", n.ID(), n.mu.startIndex, before.Index)
		}
	}
	for i, n := range ns {
		var seeds []string
		if i > 0 {
			seeds = []string{ns[0].GossipAddr()}
		}
		go n.Join(context.Background(), seeds)
	}
	waitFor(t, 30*time.Second, "restored view", func() bool {
		for _, n := range ns {
			v := n.View()
			if v.Epoch < before.Epoch {
				return false
			}
			for _, m := range before.Members {
				if _, ok := v.Member(m.ID); !ok {
					return false
				}
			}
		}
		return true
	})
	for _, n := range ns {
		if n.StatusInfo().Bootstrapped {
			t.Errorf("%s bootstrapped again on restart", n.ID())
		}
	}
	// The restarted servers are new incarnations: they rejoin and become
	// Active again; the client that did not come back is committed Failed.
	waitFor(t, 30*time.Second, "servers Active again, c1 Failed", func() bool {
		return converged(ns, map[string]consensus.Status{"s1": consensus.StatusActive, "s2": consensus.StatusActive,
			"s3": consensus.StatusActive, "c1": consensus.StatusFailed})
	})
}

// TestMonotonicEpoch_JoinStormBatches: clients joining together are
// committed in a few view changes, not two per client.
func TestMonotonicEpoch_JoinStormBatches(t *testing.T) {
	tc := newTestCluster(t)
	tc.startServers(3, nodeOpts{})
	before := tc.node("s1").View().Epoch
	const clients = 8
	var ns []*Node
	for i := 0; i < clients; i++ {
		ns = append(ns, tc.start(fmt.Sprintf("c%d", i), nodeOpts{}))
	}
	errs := make(chan error, clients)
	for _, n := range ns {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			errs <- n.Join(ctx, tc.seed("s1"))
		}()
	}
	for range ns {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	after := tc.node("s1").View().Epoch
	t.Logf("%d joins took %d epochs", clients, after-before)
	if after-before > clients {
		t.Errorf("%d concurrent joins took %d epochs; want them batched (≤ %d)", clients, after-before, clients)
	}
}
