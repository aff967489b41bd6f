package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kelpie/cluster/consensus"
	"github.com/kelpie/cluster/migration"
	"github.com/kelpie/cluster/placement"
)

// placeOn places actor on node and increments it k times.
func placeOn(t *testing.T, via *Node, actor, node string, k int) placement.Placement {
	t.Helper()
	res, err := via.Place(context.Background(), actor, PlaceOptions{Prefer: node})
	if err != nil || res.Placement.Node != node {
		t.Fatalf("place %s on %s: %+v %v", actor, node, res, err)
	}
	for i := 0; i < k; i++ {
		if _, err := incr(t, via, actor); err != nil {
			t.Fatal(err)
		}
	}
	return res.Placement
}

func value(t *testing.T, via *Node, actor string) (int64, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := via.Invoke(ctx, actor, []byte(`{"op":"get"}`))
	if err != nil {
		t.Fatalf("get %s: %v", actor, err)
	}
	var r struct {
		Value int64  `json:"value"`
		Node  string `json:"node"`
	}
	json.Unmarshal(res.Body, &r)
	return r.Value, r.Node
}

// TestMigrationAtomicity_Basic: a migration moves the actor with exactly its
// state, under a new token; the source refuses the old token.
func TestMigrationAtomicity_Basic(t *testing.T) {
	tc, _ := startFleet(t, 2)
	via := tc.node("s2")
	p := placeOn(t, via, "mover", "c1", 7)
	out, err := via.Migrate(context.Background(), "mover", "c2")
	if err != nil || out.State != "committed" || out.NewToken <= p.Token || out.Bytes == 0 {
		t.Fatalf("migrate: %+v %v", out, err)
	}
	v, node := value(t, tc.node("s1"), "mover")
	if v != 7 || node != "c2" {
		t.Fatalf("after migration: value %d on %s, want 7 on c2", v, node)
	}
	if _, err := tc.node("c1").serveInvoke(context.Background(), "mover", p.Token, []byte(`{"op":"get"}`)); err == nil {
		t.Fatal("source served the old token after migrating away")
	}
	// A client reads from any server, whose replica may lag the commit by
	// a heartbeat: wait for it (client reads are eventually consistent).
	var ms []MigrationInfo
	waitFor(t, 5*time.Second, "committed migration visible from a client", func() bool {
		ms, _ = tc.node("c1").Migrations(context.Background(), "committed")
		return len(ms) == 1
	})
	if ms[0].Actor != "mover" || ms[0].Checksum == "" {
		t.Fatalf("migrations: %+v", ms)
	}
	if _, err := via.Migrations(context.Background(), "bogus"); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("bad state filter: %v", err)
	}
	tc.checkSingleActivation()
}

// failingHost fails Deactivate for chosen actors (source deactivate fault).
type failingHost struct {
	Host
	Invoker
	fail func(actor string) bool
}

func (h failingHost) Deactivate(ctx context.Context, actor string) ([]byte, error) {
	if h.fail(actor) {
		return nil, errors.New("injected: deactivate failed")
	}
	return h.Host.Deactivate(ctx, actor)
}

// migrationFault runs one migration of a counter at value 5 from c1 to c2
// with a fault injected by inject, and returns the outcome and error.
type faultCase struct {
	tc       *testCluster
	via      *Node
	p        placement.Placement
	out      MigrationOutcome
	err      error
	survived bool // the state is expected to survive
}

func TestMigrationAtomicity_SourceDeactivateFails(t *testing.T) {
	tc, _ := startFleet(t, 2)
	// Swap c1's host for one whose Deactivate fails for "stuck".
	c1 := tc.node("c1")
	var failing atomic.Bool
	failing.Store(true)
	orig := c1.actors.host
	c1.actors.host = failingHost{Host: orig, Invoker: orig.(Invoker), fail: func(a string) bool { return a == "stuck" && failing.Load() }}
	via := tc.node("s2")
	placeOn(t, via, "stuck", "c1", 5)
	out, err := via.Migrate(context.Background(), "stuck", "c2")
	if err != nil || out.State != "aborted" {
		t.Fatalf("want aborted: %+v %v", out, err)
	}
	v, node := value(t, via, "stuck")
	if v != 5 || node != "c1" {
		t.Fatalf("after abort: %d on %s, want 5 on c1", v, node)
	}
	failing.Store(false)
	tc.checkSingleActivation()
}

func TestMigrationAtomicity_ChecksumMismatch(t *testing.T) {
	tc, _ := startFleet(t, 2)
	tc.node("c1").testCorruptTransfer = func(a string) bool { return a == "garbled" }
	via := tc.node("s2")
	placeOn(t, via, "garbled", "c1", 5)
	out, err := via.Migrate(context.Background(), "garbled", "c2")
	if err != nil || out.State != "aborted" {
		t.Fatalf("want aborted: %+v %v", out, err)
	}
	v, node := value(t, via, "garbled")
	if v != 5 || node != "c1" {
		t.Fatalf("after abort: %d on %s, want 5 on c1", v, node)
	}
	tc.checkSingleActivation()
}

// withHooks replaces the leader's coordinator hooks for one test.
func withHooks(t *testing.T, n *Node, h migration.Hooks) {
	cfg := n.cfg.Migration
	cfg.Hooks = h
	cfg.Logger = n.logger
	c, err := migration.New(cfg, migLog{n}, migMover{n})
	if err != nil {
		t.Fatal(err)
	}
	n.coord = c
}

func TestMigrationAtomicity_TargetCrashBeforeCommit(t *testing.T) {
	tc, _ := startFleet(t, 3)
	leader := tc.waitLeader()
	withHooks(t, leader, migration.Hooks{AfterHandoff: func(r migration.Record) { tc.stop(r.To) }})
	placeOn(t, leader, "orphaned-target", "c1", 5)
	out, err := leader.Migrate(context.Background(), "orphaned-target", "c2")
	// The target is gone: the commit is refused once the view says so, or
	// goes through (the target is still Active in the view) — either way
	// the migration ends and the actor is usable again.
	if err != nil {
		t.Fatalf("%+v %v", out, err)
	}
	v, node := value(t, tc.node("c3"), "orphaned-target")
	t.Logf("outcome %s; afterwards value %d on %s", out.State, v, node)
	if out.State == "aborted" && (v != 5 || node != "c1") {
		t.Fatalf("aborted: want 5 on c1, got %d on %s", v, node)
	}
	if node == "c2" {
		t.Fatalf("served by the crashed target")
	}
	tc.checkSingleActivation()
}

func TestMigrationAtomicity_SourceCrashAfterHandoff(t *testing.T) {
	tc, _ := startFleet(t, 3)
	leader := tc.waitLeader()
	withHooks(t, leader, migration.Hooks{AfterHandoff: func(r migration.Record) { tc.stop(r.From) }})
	placeOn(t, leader, "survivor", "c1", 5)
	out, err := leader.Migrate(context.Background(), "survivor", "c2")
	if err != nil || out.State != "committed" {
		t.Fatalf("want committed with the handed-over state: %+v %v", out, err)
	}
	v, node := value(t, tc.node("c3"), "survivor")
	if v != 5 || node != "c2" {
		t.Fatalf("want 5 on c2, got %d on %s", v, node)
	}
	tc.checkSingleActivation()
}

func TestMigrationAtomicity_LeaderCrashAfterStart(t *testing.T) {
	tc, _ := startFleet(t, 2)
	leader := tc.waitLeader()
	withHooks(t, leader, migration.Hooks{AfterStart: func(r migration.Record) { go tc.stop(leader.ID()) }})
	var via *Node
	for _, n := range tc.live() {
		if n != leader && n.IsServer() {
			via = n
		}
	}
	placeOn(t, via, "headless", "c1", 5)
	_, err := leader.Migrate(context.Background(), "headless", "c2")
	t.Logf("migrate on the crashing leader: %v", err)
	nl := tc.waitLeader()
	var last consensus.Migration
	waitFor(t, 15*time.Second, "new leader ends the migration", func() bool {
		running, finished := nl.fsm.Migrations()
		for _, m := range finished {
			if m.Actor == "headless" {
				last = m
			}
		}
		return len(running) == 0 && last.Actor != ""
	})
	if last.Actor != "headless" || (last.State != consensus.MigrationAborted && last.State != consensus.MigrationCommitted) {
		t.Fatalf("migration ended %+v", last)
	}
	v, node := value(t, tc.node("c2"), "headless")
	if v != 5 {
		t.Fatalf("value %d on %s after %s, want 5", v, node, last.State)
	}
	tc.checkSingleActivation()
}

func TestMigrationAtomicity_LeaderCrashAfterCommit(t *testing.T) {
	tc, _ := startFleet(t, 2)
	leader := tc.waitLeader()
	withHooks(t, leader, migration.Hooks{AfterCommit: func(r migration.Record) { go tc.stop(leader.ID()) }})
	var via *Node
	for _, n := range tc.live() {
		if n != leader && n.IsServer() {
			via = n
		}
	}
	placeOn(t, via, "committed-headless", "c1", 5)
	out, _ := leader.Migrate(context.Background(), "committed-headless", "c2")
	if out.State != "committed" {
		t.Fatalf("outcome %+v", out)
	}
	tc.waitLeader()
	v, node := value(t, tc.node("c1"), "committed-headless")
	if v != 5 || node != "c2" {
		t.Fatalf("want 5 on c2, got %d on %s", v, node)
	}
	tc.checkSingleActivation()
}

// TestMigrationAtomicity_MinorityRefused: a migration asked on the minority
// side fails with ErrNoQuorum.
func TestMigrationAtomicity_MinorityRefused(t *testing.T) {
	tc, all := startFleet(t, 2)
	placeOn(t, tc.node("s1"), "stay", "c2", 1)
	leader := tc.waitLeader()
	var voter *Node
	for _, n := range all[:3] {
		if n != leader {
			voter = n
			break
		}
	}
	var rest []string
	for _, n := range all {
		if n != voter {
			rest = append(rest, tc.ip(n.ID()))
		}
	}
	tc.faults.Isolate(tc.ip(voter.ID()), rest)
	defer tc.faults.Heal()
	_, err := voter.Migrate(context.Background(), "stay", "c1")
	if !errors.Is(err, ErrNoQuorum) {
		t.Fatalf("minority migrate: %v, want ErrNoQuorum", err)
	}
}

// TestJoinIsReal_DrainThenLeave: draining a node with 300 actors moves all
// of them off; its graceful leave then completes and it hosts nothing.
func TestJoinIsReal_DrainThenLeave(t *testing.T) {
	tc, _ := startFleet(t, 2)
	leader := tc.waitLeader()
	var items []string
	for i := 0; i < 300; i++ {
		items = append(items, fmt.Sprintf("d-%d", i))
	}
	var wg sync.WaitGroup
	for _, a := range items {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := leader.Place(context.Background(), a, PlaceOptions{Prefer: "c1"})
			if err != nil || res.Placement.Node != "c1" {
				t.Errorf("place %s: %+v %v", a, res, err)
				return
			}
			if _, err := incr(t, tc.node("s1"), a); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	start := time.Now()
	res, err := tc.node("c2").Drain(ctx, "c1")
	if err != nil || res.Moved != 300 {
		t.Fatalf("drain: %+v %v", res, err)
	}
	t.Logf("drained 300 actors in %s", time.Since(start))
	if ps, _ := leader.fsm.PlacementsByNode("c1"); len(ps) != 0 {
		t.Fatalf("%d placements still on c1", len(ps))
	}
	for _, a := range items[:20] {
		if v, node := value(t, tc.node("s3"), a); v != 1 || node == "c1" {
			t.Fatalf("%s: %d on %s after drain", a, v, node)
		}
	}
	if err := tc.node("c1").Leave(ctx); err != nil {
		t.Fatalf("leave after drain: %v", err)
	}
	if got := tc.hosts["c1"][0].Active(); len(got) != 0 {
		t.Fatalf("drained node still hosts %v", got)
	}
	tc.checkSingleActivation()
}

// TestMigrationAtomicity_Stress: counters incremented while migrating around
// the cluster repeatedly: every final value equals the acknowledged
// increments (plus at most the increments whose outcome is unknown) and
// activation intervals never overlap. (The full size, 500 actors × 5
// migrations, runs unless -short.) On a loaded machine the in-process leader
// may lose its leadership meanwhile: migrations it was driving end with an
// unknown outcome and the next leader finishes them, which is part of what
// this test checks.
func TestMigrationAtomicity_Stress(t *testing.T) {
	actors, rounds := 500, 5
	if testing.Short() {
		actors, rounds = 60, 3
	}
	migrationStress(t, actors, rounds, false)
}

// TestMigrationAtomicity_StressLeaderChanges is the stress test with the
// leadership handed to another voter every 0.6 s while migrations run: the
// deposed leader's migrations end with unknown outcomes, its late transfers
// reach nodes after the next leader has moved on, and the next leader aborts
// what it finds running. No acknowledged increment may be lost.
func TestMigrationAtomicity_StressLeaderChanges(t *testing.T) {
	migrationStress(t, 150, 5, true)
}

func migrationStress(t *testing.T, actors, rounds int, churn bool) {
	tc, all := startFleet(t, 3)
	tc.waitLeader()
	names := make([]string, actors)
	acked := make([]atomic.Int64, actors)
	for i := range names {
		names[i] = fmt.Sprintf("st-%d", i)
	}
	// Place and pre-increment each actor k=2 times.
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for i, a := range names {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			for k := 0; k < 2; k++ {
				if _, err := incr(t, all[(i+k)%len(all)], a); err != nil {
					t.Error(err)
					return
				}
				acked[i].Add(1)
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	// Traffic: workers increment random actors; only acknowledged
	// increments count. Unknown outcomes are not retried and counted apart.
	stop := make(chan struct{})
	unknown := make([]atomic.Int64, actors)
	var twg sync.WaitGroup
	for w := 0; w < 8; w++ {
		twg.Add(1)
		go func() {
			defer twg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 99))
			for {
				select {
				case <-stop:
					return
				default:
				}
				i := rng.IntN(actors)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, err := all[rng.IntN(len(all))].Invoke(ctx, names[i], []byte(`{"op":"incr"}`))
				cancel()
				switch {
				case err == nil:
					acked[i].Add(1)
				case errors.Is(err, ErrUnknownOutcome):
					unknown[i].Add(1)
				}
			}
		}()
	}
	// Migrations: each actor moves `rounds` times to a node other than its
	// current one, 16 at a time.
	var migrated, aborted, unsettled, refused, transfers atomic.Int64
	if churn {
		churnDone := make(chan struct{})
		defer func() { <-churnDone }()
		go func() {
			defer close(churnDone)
			for {
				select {
				case <-stop:
					return
				case <-time.After(600 * time.Millisecond):
				}
				if l := tc.leader(); l != nil {
					ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
					if l.raft.TransferLeadership(ctx) == nil {
						transfers.Add(1)
					}
					cancel()
				}
			}
		}()
	}
	nodes := []string{"s1", "s2", "s3", "c1", "c2", "c3"}
	currentLeader := func() *Node {
		for range 500 {
			if l := tc.leader(); l != nil {
				return l
			}
			time.Sleep(20 * time.Millisecond)
		}
		return nil
	}
	for r := 0; r < rounds; r++ {
		var mwg sync.WaitGroup
		msem := make(chan struct{}, 16)
		for i, a := range names {
			mwg.Add(1)
			msem <- struct{}{}
			go func() {
				defer mwg.Done()
				defer func() { <-msem }()
				l := currentLeader()
				if l == nil {
					t.Errorf("no leader for 10s")
					return
				}
				p, ok, _ := l.fsm.Placement(a)
				if !ok {
					t.Errorf("%s not placed", a)
					return
				}
				to := nodes[(i+r+1)%len(nodes)]
				if to == p.Node {
					to = nodes[(i+r+2)%len(nodes)]
				}
				out, err := l.Migrate(context.Background(), a, to)
				var nq *NoQuorumError
				switch {
				case err != nil && (errors.Is(err, ErrUnknownOutcome) || errors.Is(err, ErrNotLeader) || errors.As(err, &nq)):
					unsettled.Add(1) // leadership changed under it
				case err != nil && (errors.Is(err, ErrMigrating) || errors.Is(err, migration.ErrInProgress)):
					refused.Add(1) // a deposed leader's migration of it still runs
				case err != nil:
					t.Errorf("migrate %s: %v", a, err)
				case out.State == "committed":
					migrated.Add(1)
				default:
					aborted.Add(1)
				}
			}()
		}
		mwg.Wait()
	}
	close(stop)
	twg.Wait()
	// Migrations a deposed leader left running are ended by the next (G7).
	waitFor(t, 30*time.Second, "no running migrations", func() bool {
		l := tc.leader()
		if l == nil {
			return false
		}
		running, _ := l.fsm.Migrations()
		return len(running) == 0
	})
	for i, a := range names {
		v, _ := value(t, all[i%len(all)], a)
		if lo, hi := acked[i].Load(), acked[i].Load()+unknown[i].Load(); v < lo || v > hi {
			t.Errorf("%s = %d, acknowledged increments %d (+%d with unknown outcome)", a, v, lo, hi-lo)
		}
	}
	t.Logf("%d migrations committed, %d aborted, %d unsettled by a leader change, %d refused (still migrating); %d leadership transfers",
		migrated.Load(), aborted.Load(), unsettled.Load(), refused.Load(), transfers.Load())
	if churn && transfers.Load() == 0 {
		t.Error("no leadership transfer happened: the test did not test what it says")
	}
	tc.checkSingleActivation()
}

// TestMigrationAtomicity_OwnerCacheNotStuck: a client owner that cached its
// actor's placement while it was Migrating serves it again once the
// migration has ended (it used to refuse requests through it with "actor is
// migrating" for as long as the stale entry lived, seen in the stress test).
func TestMigrationAtomicity_OwnerCacheNotStuck(t *testing.T) {
	tc, _ := startFleet(t, 2)
	leader := tc.waitLeader()
	c1 := tc.node("c1")
	placeOn(t, c1, "cached", "c1", 3)
	withHooks(t, leader, migration.Hooks{AfterStart: func(r migration.Record) {
		// c1 learns the Migrating placement (as traffic through it would).
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			c1.pcache.drop(r.Actor)
			lr, err := c1.Lookup(context.Background(), r.Actor)
			if err == nil && lr.Placement.State == placement.StateMigrating {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Error("c1 never saw the placement Migrating")
	}})
	out, err := leader.Migrate(context.Background(), "cached", "c2")
	if err != nil || out.State != "committed" {
		t.Fatalf("migrate: %+v %v", out, err)
	}
	withHooks(t, leader, migration.Hooks{})
	if v, node := value(t, c1, "cached"); v != 3 || node != "c2" {
		t.Fatalf("after the migration: %d on %s, want 3 on c2", v, node)
	}
	// And back: the new owner's cache now holds what it learnt meanwhile.
	out, err = leader.Migrate(context.Background(), "cached", "c1")
	if err != nil || out.State != "committed" {
		t.Fatalf("migrate back: %+v %v", out, err)
	}
	if v, node := value(t, c1, "cached"); v != 3 || node != "c1" {
		t.Fatalf("after migrating back: %d on %s, want 3 on c1", v, node)
	}
	tc.checkSingleActivation()
}
