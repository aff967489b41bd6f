package cluster

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/kelpie/cluster/consensus"
	"github.com/kelpie/cluster/metrics"
)

// TestMetrics_EndToEnd runs a fleet (3 servers, 2 clients) with the
// go-metrics bridge installed, drives placements through every node, a
// migration and a client crash, scrapes /metrics from every node over HTTP
// and checks that the metrics moved as the events require. Its subtests lint
// every node's registry and check that every metric the shipped dashboard
// and alert rules use is exposed by the live nodes.
func TestMetrics_EndToEnd(t *testing.T) {
	tc, all := startFleet(t, 2)
	for _, n := range all {
		if err := metrics.InstallGoMetrics(n.Registry()); err != nil {
			t.Fatal(err)
		}
	}
	leader := tc.waitLeader()
	before := map[string]families{}
	for _, n := range all {
		before[n.ID()] = scrape(t, n)
	}

	// Placements through every node (clients forward to the leader).
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const placed = 30
	start := time.Now()
	for i := 0; i < placed; i++ {
		if _, err := all[i%len(all)].Place(ctx, fmt.Sprintf("metric-actor-%02d", i), PlaceOptions{}); err != nil {
			t.Fatalf("place: %v", err)
		}
	}
	t.Logf("%d sequential placements through 5 nodes took %v", placed, time.Since(start))

	// A migration c1 → c2.
	p := placeOn(t, tc.node("s2"), "metric-mover", "c1", 3)
	out, err := tc.node("s2").Migrate(ctx, "metric-mover", "c2")
	if err != nil || out.State != "committed" {
		t.Fatalf("migrate: %+v %v", out, err)
	}
	if out.NewToken <= p.Token {
		t.Fatalf("migration token %d after %d", out.NewToken, p.Token)
	}

	// A crash: c1 stops without leaving; the leader commits it Failed.
	tc.stop("c1")
	live := tc.live()
	waitFor(t, 20*time.Second, "c1 committed Failed on every node", func() bool {
		return converged(live, map[string]consensus.Status{"c1": consensus.StatusFailed})
	})
	if l := tc.leader(); l != leader {
		t.Fatalf("leadership moved during the test (%s → %v): per-leader counters cannot be compared", leader.ID(), l)
	}

	// Every node's gauge reaches the committed epoch (publication is
	// asynchronous, so wait for it), then one scrape per node is checked.
	committed := leader.fsm.View().Epoch
	after := map[string]families{}
	waitFor(t, 10*time.Second, "kelpie_view_epoch = committed epoch on every node", func() bool {
		for _, n := range live {
			f := scrape(t, n)
			after[n.ID()] = f
			if f.value("kelpie_view_epoch") != float64(committed) {
				return false
			}
		}
		return true
	})
	delta := func(id, name string, labels ...string) float64 {
		return after[id].value(name, labels...) - before[id].value(name, labels...)
	}
	histDelta := func(id, name string) uint64 {
		return after[id].histCount(name) - before[id].histCount(name)
	}
	L := leader.ID()

	t.Run("Membership", func(t *testing.T) {
		for _, n := range live {
			f := after[n.ID()]
			if got := f.value("kelpie_view_epoch"); got != float64(committed) {
				t.Errorf("%s: kelpie_view_epoch %v, committed epoch %d", n.ID(), got, committed)
			}
			if got := f.value("kelpie_members", "status=failed"); got != 1 {
				t.Errorf("%s: kelpie_members{status=failed} = %v, want 1", n.ID(), got)
			}
			if got := f.value("kelpie_members", "status=active"); got != 4 {
				t.Errorf("%s: kelpie_members{status=active} = %v, want 4", n.ID(), got)
			}
			if got := f.value("kelpie_gossip_members", "status=alive"); got != 4 {
				t.Errorf("%s: kelpie_gossip_members{status=alive} = %v, want 4", n.ID(), got)
			}
			if got := delta(n.ID(), "kelpie_view_changes_observed_total"); got < 1 {
				t.Errorf("%s: kelpie_view_changes_observed_total moved by %v", n.ID(), got)
			}
		}
		// The failure was detected and committed once, by the leader.
		for _, name := range []string{"kelpie_failure_detection_seconds", "kelpie_failure_detection_since_last_lease_seconds"} {
			for _, n := range live {
				want := uint64(0)
				if n == leader {
					want = 1
				}
				if got := histDelta(n.ID(), name); got != want {
					t.Errorf("%s: %s count moved by %d, want %d", n.ID(), name, got, want)
				}
			}
		}
		if got := delta(L, "kelpie_view_change_commits_total", "reason=reconcile"); got < 1 {
			t.Errorf("leader: kelpie_view_change_commits_total{reason=reconcile} moved by %v", got)
		}
		if got := delta(L, "kelpie_reconcile_runs_total", "result=committed"); got < 1 {
			t.Errorf("leader: kelpie_reconcile_runs_total{result=committed} moved by %v", got)
		}
		d := after[L].histSum("kelpie_failure_detection_seconds") - before[L].histSum("kelpie_failure_detection_seconds")
		s := after[L].histSum("kelpie_failure_detection_since_last_lease_seconds") - before[L].histSum("kelpie_failure_detection_since_last_lease_seconds")
		t.Logf("c1 crash: gossip signal → committed Failed %.3fs; last lease grant → committed Failed %.3fs", d, s)
	})

	t.Run("Leadership", func(t *testing.T) {
		leaders := 0.0
		for _, n := range live {
			leaders += after[n.ID()].value("kelpie_is_leader")
		}
		if leaders != 1 || after[L].value("kelpie_is_leader") != 1 {
			t.Errorf("kelpie_is_leader: sum %v, leader's %v", leaders, after[L].value("kelpie_is_leader"))
		}
		term := after[L].value("kelpie_raft_term")
		for _, id := range []string{"s1", "s2", "s3"} {
			f := after[id]
			if f.value("kelpie_raft_term") != term || term == 0 {
				t.Errorf("%s: kelpie_raft_term %v, leader's %v", id, f.value("kelpie_raft_term"), term)
			}
			if f.value("kelpie_raft_applied_index") == 0 || f.value("kelpie_raft_commit_index") == 0 {
				t.Errorf("%s: raft indexes are 0", id)
			}
			for name, want := range map[string]float64{"kelpie_voters": 3, "kelpie_voters_reachable": 3, "kelpie_voters_target": 3} {
				if got := f.value(name); got != want {
					t.Errorf("%s: %s = %v, want %v", id, name, got, want)
				}
			}
		}
		if f := after["c2"]; f.has("kelpie_raft_term") || f.has("kelpie_voters") {
			t.Error("client c2 exposes Raft or voter gauges")
		}
		waitFor(t, 10*time.Second, "leader reports 3 healthy voters", func() bool {
			return gather(t, leader.Registry()).value("kelpie_voters_healthy") == 3
		})
	})

	t.Run("Placement", func(t *testing.T) {
		ok := 0.0
		for _, n := range live {
			ok += delta(n.ID(), "kelpie_placement_requests_total", "outcome=ok")
		}
		// c1 is gone, but every one of its Place calls was also counted
		// on the leader (forwarded).
		if ok < placed+1 {
			t.Errorf("kelpie_placement_requests_total{outcome=ok} moved by %v on live nodes, want ≥ %d", ok, placed+1)
		}
		if got := histDelta(L, "kelpie_placement_commit_seconds"); got < 1 {
			t.Errorf("leader: kelpie_placement_commit_seconds count moved by %d", got)
		}
		batched := after[L].histSum("kelpie_placement_batch_size") - before[L].histSum("kelpie_placement_batch_size")
		if batched < placed+1 {
			t.Errorf("leader: kelpie_placement_batch_size sum moved by %v, want ≥ %d placements", batched, placed+1)
		}
		// The replica gauges agree with the leader's table.
		waitFor(t, 10*time.Second, "kelpie_placements = committed placements on every server", func() bool {
			ps, _ := leader.fsm.Placements()
			for _, id := range []string{"s1", "s2", "s3"} {
				f := gather(t, tc.node(id).Registry())
				if f.value("kelpie_placements") != float64(len(ps)) {
					return false
				}
				perNode := map[string]int{}
				for _, p := range ps {
					perNode[p.Node]++
				}
				for node, k := range perNode {
					if f.value("kelpie_node_placements", "node="+node) != float64(k) {
						return false
					}
				}
			}
			return true
		})
		if got := after["c2"].value("kelpie_local_actors"); got < 1 {
			t.Errorf("c2: kelpie_local_actors = %v, want ≥ 1 (it hosts the migrated actor)", got)
		}
		for _, n := range live {
			if got := after[n.ID()].value("kelpie_lease_remaining_seconds"); got <= 0 {
				t.Errorf("%s: kelpie_lease_remaining_seconds = %v", n.ID(), got)
			}
			if got := delta(n.ID(), "kelpie_lease_renewals_total", "result=granted"); got < 1 {
				t.Errorf("%s: no lease renewal counted", n.ID())
			}
		}
	})

	t.Run("Migration", func(t *testing.T) {
		for name, want := range map[string]float64{
			"kelpie_migrations_started_total":          1,
			"kelpie_migration_bytes_total":             float64(out.Bytes),
			"kelpie_migration_checksum_failures_total": 0,
		} {
			if got := delta(L, name); got != want {
				t.Errorf("leader: %s moved by %v, want %v", name, got, want)
			}
		}
		if got := delta(L, "kelpie_migrations_total", "outcome=committed"); got != 1 {
			t.Errorf("leader: kelpie_migrations_total{outcome=committed} moved by %v, want 1", got)
		}
		if got := delta(L, "kelpie_migrations_total", "outcome=aborted"); got != 0 {
			t.Errorf("leader: kelpie_migrations_total{outcome=aborted} moved by %v, want 0", got)
		}
		if got := histDelta(L, "kelpie_migration_duration_seconds"); got != 1 {
			t.Errorf("leader: kelpie_migration_duration_seconds count moved by %d, want 1", got)
		}
	})

	t.Run("Bridge", func(t *testing.T) {
		f := after[L]
		var bridged []string
		for _, n := range f.names() {
			if !strings.HasPrefix(n, "kelpie_") {
				bridged = append(bridged, n)
			}
		}
		t.Logf("bridged metric families: %s", strings.Join(bridged, " "))
		// Installed after start: only what happened since is there (the
		// crash, placements, heartbeats).
		for _, want := range []string{"raft_apply_total", "raft_commit_time", "memberlist_gossip", "memberlist_probe_node", "serf_member_failed_total"} {
			if !f.has(want) {
				t.Errorf("leader lacks bridged %s", want)
			}
		}
	})

	t.Run("Lint", func(t *testing.T) {
		for _, n := range live {
			for _, p := range lintGatherer(t, n) {
				t.Errorf("%s: %s: %s", n.ID(), p.Metric, p.Text)
			}
		}
	})

	exposed := union(after["s1"], after["s2"], after["s3"], after["c2"])
	t.Run("Dashboard", func(t *testing.T) {
		names := dashboardMetricNames(t, "metrics/dashboards/kelpie.json")
		if len(names) < 30 {
			t.Fatalf("dashboard references only %d metrics", len(names))
		}
		for _, name := range names {
			if !exposed.exposes(name) {
				t.Errorf("dashboard uses %s, which no live node exposes", name)
			}
		}
	})

	t.Run("Alerts", func(t *testing.T) {
		names := alertMetricNames(t, "metrics/alerts.yml")
		if len(names) < 10 {
			t.Fatalf("alert rules reference only %d metrics", len(names))
		}
		for _, name := range names {
			if !exposed.exposes(name) {
				t.Errorf("alert rules use %s, which no live node exposes", name)
			}
		}
	})
}

// lintGatherer runs testutil.GatherAndLint on the node's registry.
func lintGatherer(t *testing.T, n *Node) []promlint.Problem {
	t.Helper()
	problems, err := testutil.GatherAndLint(n.Registry())
	if err != nil {
		t.Fatalf("%s: gather and lint: %v", n.ID(), err)
	}
	return problems
}
