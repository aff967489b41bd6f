package metrics

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"

	"github.com/kelpie/cluster/consensus"
)

// fakeSource is a Source with settable state.
type fakeSource struct {
	leader, server bool
	lease          time.Duration
	lastGrant      map[string]time.Time
}

func (f *fakeSource) MetricsIsLeader() bool { return f.leader }
func (f *fakeSource) MetricsRaft() (uint64, uint64, uint64, bool) {
	return 7, 120, 118, f.server
}
func (f *fakeSource) MetricsGossipDropped() uint64         { return 3 }
func (f *fakeSource) MetricsLeaseRemaining() time.Duration { return f.lease }
func (f *fakeSource) MetricsLease() Lease {
	return Lease{Duration: 4 * time.Second, Margin: time.Second, RenewInterval: 4 * time.Second / 3}
}
func (f *fakeSource) MetricsGossipMembers() map[string]int {
	return map[string]int{"alive": 4, "failed": 1}
}
func (f *fakeSource) MetricsLocalActors() int { return 2 }
func (f *fakeSource) MetricsLastLeaseGrant(m string) (time.Time, bool) {
	t, ok := f.lastGrant[m]
	return t, ok
}
func (f *fakeSource) MetricsVoters() (Voters, bool) {
	return Voters{Total: 3, Reachable: 2, Target: 3, Healthy: 2, HealthKnown: f.leader}, f.server
}
func (f *fakeSource) MetricsPlacements() (map[string]int, bool) {
	if !f.server {
		return nil, false
	}
	return map[string]int{"s1": 3, "c1": 5, "c2": 0}, true
}

func newTest(t *testing.T, src Source) (*Metrics, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	m, err := New(reg, src)
	if err != nil {
		t.Fatal(err)
	}
	return m, reg
}

func gathered(t *testing.T, g prometheus.Gatherer) map[string]*dto.MetricFamily {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}

// issueMetrics is every metric issue 7 asks for, by name.
var issueMetrics = []string{
	"kelpie_members", "kelpie_gossip_members", "kelpie_view_epoch", "kelpie_view_change_commits_total",
	"kelpie_is_leader", "kelpie_raft_term", "kelpie_leader_changes_total", "kelpie_raft_commit_index",
	"kelpie_raft_applied_index", "kelpie_failure_detection_seconds", "kelpie_reconcile_runs_total",
	"kelpie_gossip_events_dropped_total", "kelpie_placements", "kelpie_node_placements",
	"kelpie_placement_requests_total", "kelpie_placement_commit_seconds", "kelpie_placement_batch_size",
	"kelpie_lease_remaining_seconds", "kelpie_self_fencing_events_total", "kelpie_stale_token_rejections_total",
	"kelpie_migrations_total", "kelpie_migration_duration_seconds", "kelpie_migration_bytes_total",
	"kelpie_voters_healthy", "kelpie_voters", "kelpie_voters_target",
}

func TestLintClean(t *testing.T) {
	for _, src := range []*fakeSource{{leader: true, server: true}, {server: true}, {}} {
		m, reg := newTest(t, src)
		// Touch every label-less histogram so that it has samples.
		m.FailureDetection.Observe(.1)
		m.FailureSilence.Observe(2)
		m.PlacementRequest("ok", time.Millisecond)
		m.PlaceCommit.Observe(.002)
		m.PlaceBatch.Observe(12)
		m.MigrationEnded("committed", 20*time.Millisecond, 1024)
		m.ViewChangeCommits.WithLabelValues("reconcile").Inc()
		for _, p := range lint(t, reg) {
			t.Errorf("lint %+v: %s: %s", *src, p.Metric, p.Text)
		}
	}
}

func TestIssueMetricsDeclared(t *testing.T) {
	m, reg := newTest(t, &fakeSource{leader: true, server: true})
	m.ViewChangeCommits.WithLabelValues("reconcile").Inc()
	mfs := gathered(t, reg)
	for _, name := range issueMetrics {
		if _, ok := mfs[name]; !ok {
			t.Errorf("%s is not exposed", name)
		}
	}
	for name, mf := range mfs {
		if !strings.HasPrefix(name, "kelpie_") {
			t.Errorf("%s: not in the kelpie_ namespace", name)
		}
		if mf.GetHelp() == "" {
			t.Errorf("%s: no help", name)
		}
	}
}

func TestStateCollector(t *testing.T) {
	_, reg := newTest(t, &fakeSource{leader: true, server: true, lease: 1500 * time.Millisecond})
	for name, want := range map[string]float64{
		"kelpie_is_leader": 1, "kelpie_raft_term": 7, "kelpie_raft_commit_index": 120, "kelpie_raft_applied_index": 118,
		"kelpie_voters": 3, "kelpie_voters_reachable": 2, "kelpie_voters_target": 3, "kelpie_voters_healthy": 2,
		"kelpie_placements": 8, "kelpie_local_actors": 2, "kelpie_lease_remaining_seconds": 1.5,
		"kelpie_lease_duration_seconds": 4, "kelpie_lease_margin_seconds": 1, "kelpie_gossip_events_dropped_total": 3,
	} {
		if got := onlyMetric(t, reg, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	mfs := gathered(t, reg)
	nodes := map[string]float64{}
	for _, m := range mfs["kelpie_node_placements"].GetMetric() {
		nodes[m.GetLabel()[0].GetValue()] = m.GetGauge().GetValue()
	}
	if nodes["c1"] != 5 || nodes["s1"] != 3 || len(nodes) != 3 {
		t.Errorf("kelpie_node_placements = %v", nodes)
	}
	gm := map[string]float64{}
	for _, m := range mfs["kelpie_gossip_members"].GetMetric() {
		gm[m.GetLabel()[0].GetValue()] = m.GetGauge().GetValue()
	}
	if gm["alive"] != 4 || gm["failed"] != 1 || len(gm) != len(GossipStatuses) {
		t.Errorf("kelpie_gossip_members = %v", gm)
	}
}

// onlyMetric is the value of the one series of a gathered family.
func onlyMetric(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mf, ok := gathered(t, reg)[name]
	if !ok || len(mf.GetMetric()) != 1 {
		t.Fatalf("%s: want exactly one series, got %v", name, mf)
	}
	m := mf.GetMetric()[0]
	return m.GetGauge().GetValue() + m.GetCounter().GetValue()
}

// value reads a counter or gauge (testutil.ToFloat64 without the testutil
// package, whose diff dependency is not in go.mod).
func value(t *testing.T, c prometheus.Metric) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetGauge().GetValue() + m.GetCounter().GetValue()
}

// lint runs testutil.GatherAndLint (promlint over everything g gathers).
func lint(t *testing.T, g prometheus.Gatherer) []promlint.Problem {
	t.Helper()
	problems, err := testutil.GatherAndLint(g)
	if err != nil {
		t.Fatalf("gather and lint: %v", err)
	}
	return problems
}

func TestClientOmitsServerMetrics(t *testing.T) {
	_, reg := newTest(t, &fakeSource{})
	mfs := gathered(t, reg)
	for _, name := range []string{"kelpie_raft_term", "kelpie_raft_commit_index", "kelpie_raft_applied_index",
		"kelpie_voters", "kelpie_voters_healthy", "kelpie_voters_target", "kelpie_placements", "kelpie_node_placements"} {
		if _, ok := mfs[name]; ok {
			t.Errorf("client exposes %s", name)
		}
	}
	for _, name := range []string{"kelpie_is_leader", "kelpie_local_actors", "kelpie_lease_remaining_seconds", "kelpie_gossip_members"} {
		if _, ok := mfs[name]; !ok {
			t.Errorf("client lacks %s", name)
		}
	}
	// A follower server has voters but no health verdict.
	_, reg = newTest(t, &fakeSource{server: true})
	mfs = gathered(t, reg)
	if _, ok := mfs["kelpie_voters_healthy"]; ok {
		t.Error("follower exposes kelpie_voters_healthy")
	}
	if _, ok := mfs["kelpie_voters"]; !ok {
		t.Error("follower lacks kelpie_voters")
	}
}

func TestLabelValuesPreinitialised(t *testing.T) {
	_, reg := newTest(t, &fakeSource{})
	mfs := gathered(t, reg)
	for name, want := range map[string][]string{
		"kelpie_placement_requests_total": PlacementOutcomes,
		"kelpie_migrations_total":         MigrationOutcomes,
		"kelpie_reconcile_runs_total":     ReconcileResults,
		"kelpie_lease_renewals_total":     LeaseRenewalResults,
	} {
		if got := len(mfs[name].GetMetric()); got != len(want) {
			t.Errorf("%s: %d series at start, want %d (%v)", name, got, len(want), want)
		}
	}
}

func TestObserveView(t *testing.T) {
	m, _ := newTest(t, &fakeSource{})
	v := consensus.View{Epoch: 5, Index: 40, Members: []consensus.Member{
		{ID: "a", Status: consensus.StatusActive}, {ID: "b", Status: consensus.StatusActive},
		{ID: "c", Status: consensus.StatusFailed},
	}}
	m.ObserveView(v)
	if got := value(t, m.Epoch); got != 5 {
		t.Errorf("epoch %v", got)
	}
	if got := value(t, m.MembersByStatus.WithLabelValues("active")); got != 2 {
		t.Errorf("active %v", got)
	}
	if got := value(t, m.MembersByStatus.WithLabelValues("failed")); got != 1 {
		t.Errorf("failed %v", got)
	}
	v.Epoch = 8
	m.ObserveView(v)
	m.ObserveView(consensus.View{Epoch: 6}) // older: counts nothing
	if got := value(t, m.ViewChanges); got != 8 {
		t.Errorf("view changes %v, want 8 (epochs 0→8)", got)
	}
}

func TestFailureDetectionObservation(t *testing.T) {
	t0 := time.Now()
	src := &fakeSource{leader: true, server: true, lastGrant: map[string]time.Time{"c1": t0.Add(-time.Second)}}
	m, _ := newTest(t, src)
	m.NoteFailureSignal("c1", t0)
	m.NoteFailureSignal("c1", t0.Add(time.Second)) // not the first signal: ignored
	m.NoteFailureSignal("c2", t0)
	m.ClearFailureSignal("c2") // came back
	m.ObserveFailedCommit("c1", t0.Add(120*time.Millisecond))
	m.ObserveFailedCommit("c2", t0.Add(time.Second))
	m.ObserveFailedCommit("c1", t0.Add(time.Second)) // signal consumed
	h := histogram(t, m.FailureDetection)
	if h.GetSampleCount() != 1 || h.GetSampleSum() < .119 || h.GetSampleSum() > .121 {
		t.Errorf("failure detection: count %d sum %v, want one sample of 0.12", h.GetSampleCount(), h.GetSampleSum())
	}
	s := histogram(t, m.FailureSilence)
	if s.GetSampleCount() != 2 {
		t.Errorf("since last lease: %d samples, want 2 (c1 has a grant, observed twice)", s.GetSampleCount())
	}
}

func histogram(t *testing.T, h prometheus.Histogram) *dto.Histogram {
	t.Helper()
	var m dto.Metric
	if err := h.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram()
}

func TestPlacementAndMigration(t *testing.T) {
	m, _ := newTest(t, &fakeSource{})
	m.PlacementRequest("ok", 3*time.Millisecond)
	m.PlacementRequest("no_quorum", 3*time.Second)
	if got := histogram(t, m.PlaceLatency).GetSampleCount(); got != 1 {
		t.Errorf("latency samples %d, want 1 (failures are not timed)", got)
	}
	if got := value(t, m.PlacementRequests.WithLabelValues("no_quorum")); got != 1 {
		t.Errorf("no_quorum %v", got)
	}
	m.MigrationStarted()
	m.MigrationEnded("committed", 30*time.Millisecond, 4096)
	m.MigrationEnded("aborted", 5*time.Second, 0)
	if got := value(t, m.MigrationBytes); got != 4096 {
		t.Errorf("bytes %v", got)
	}
	if got := histogram(t, m.MigrationDuration).GetSampleCount(); got != 2 {
		t.Errorf("durations %d", got)
	}
}

func TestRegisterTwiceFails(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := New(reg, &fakeSource{}); err != nil {
		t.Fatal(err)
	}
	if _, err := New(reg, &fakeSource{}); err == nil {
		t.Fatal("second New on one registry succeeded")
	}
}

// TestBucketsCoverMeasuredLatencies keeps the buckets honest against the
// figures in doc.go: each measured range must span several buckets.
func TestBucketsCoverMeasuredLatencies(t *testing.T) {
	within := func(bs []float64, lo, hi float64) int {
		n := 0
		for _, b := range bs {
			if b >= lo && b <= hi {
				n++
			}
		}
		return n
	}
	for _, c := range []struct {
		name    string
		buckets []float64
		lo, hi  float64
	}{
		{"failure detection, healthy cluster", failureDetectionBuckets, .02, .2},
		{"failure detection, during elections", failureDetectionBuckets, 1, 10},
		{"since last lease, test profile", failureSilenceBuckets, 1, 2},
		{"since last lease, LAN profile", failureSilenceBuckets, 3, 8},
	} {
		if n := within(c.buckets, c.lo, c.hi); n < 3 {
			t.Errorf("%s: only %d bucket bounds in [%v, %v]", c.name, n, c.lo, c.hi)
		}
	}
}
