package metrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kelpie/cluster/consensus"
)

// Source is the live node state read at scrape time. The node implements it;
// every method must be cheap (no network, no Raft round trip) and safe for
// concurrent use.
type Source interface {
	// MetricsIsLeader reports whether this node is the Raft leader.
	MetricsIsLeader() bool
	// MetricsRaft returns the Raft term and indexes; ok is false on clients.
	MetricsRaft() (term, commitIndex, appliedIndex uint64, ok bool)
	// MetricsGossipDropped counts gossip events dropped so far.
	MetricsGossipDropped() uint64
	// MetricsLeaseRemaining is the time left on this node's lease.
	MetricsLeaseRemaining() time.Duration
	// MetricsLease returns the lease configuration and whether the node is
	// fenced right now.
	MetricsLease() Lease
	// MetricsGossipMembers counts the members this node's gossip layer
	// knows, by gossip status (alive, leaving, left, failed, unknown).
	MetricsGossipMembers() map[string]int
	// MetricsVoters returns the voter picture; ok is false on clients.
	MetricsVoters() (v Voters, ok bool)
	// MetricsPlacements returns the committed placements per node in this
	// node's replica; ok is false where no full replica exists (clients).
	MetricsPlacements() (byNode map[string]int, ok bool)
	// MetricsLocalActors counts the actors active on this node.
	MetricsLocalActors() int
	// MetricsLastLeaseGrant is when this node, as leader, last granted member
	// a lease (in this term of leadership).
	MetricsLastLeaseGrant(member string) (time.Time, bool)
}

// Lease is the lease configuration (G6) and state.
type Lease struct {
	Duration, Margin, RenewInterval time.Duration
	Fenced                          bool
}

// Voters is a server's view of the Raft voters.
type Voters struct {
	Total     int // voters in the Raft configuration
	Reachable int // of them, alive in gossip (this node counts): the quorum gate's input
	Target    int // voters the leader keeps (Config.Voters.Voters)
	// Healthy voters according to voter management, which runs on the
	// leader only: HealthKnown is false elsewhere.
	Healthy     int
	HealthKnown bool
}

// Label values initialised to zero at registration, so that rate() and
// alerts see a series from the first scrape on.
var (
	// PlacementOutcomes are the outcomes Place reports (the node's
	// outcomeOf); anything unforeseen is counted as "error".
	PlacementOutcomes = []string{"ok", "no_quorum", "not_leader", "no_capacity", "no_eligible_node",
		"lease_pending", "invalid", "timeout", "error"}
	// MigrationOutcomes are the ways a migration ends (G7).
	MigrationOutcomes = []string{"committed", "aborted"}
	// ReconcileResults are the results of one leader reconcile pass.
	// held: a Failed verdict was held back because the member's process
	// still accepts connections (Config.FailureHold).
	ReconcileResults = []string{"in_sync", "committed", "error", "held"}
	// LeaseRenewalResults are the results of one lease renewal.
	LeaseRenewalResults = []string{"granted", "failed"}
	// GossipStatuses are the gossip statuses reported by kelpie_gossip_members.
	GossipStatuses = []string{"alive", "leaving", "left", "failed", "unknown"}

	committedStatuses = []consensus.Status{consensus.StatusJoining, consensus.StatusActive,
		consensus.StatusLeaving, consensus.StatusFailed, consensus.StatusLeft}
)

// bridgeDroppedDesc is reported by the go-metrics bridge (gometrics.go).
var bridgeDroppedDesc = prometheus.NewDesc("kelpie_gometrics_dropped_total",
	"go-metrics samples from raft, serf or memberlist dropped by the bridge because their Prometheus name would collide with a metric of another type.", nil, nil)

// Histogram buckets (seconds unless said otherwise). The figures that chose
// them are in the package documentation (doc.go).
var (
	// failureDetectionBuckets: gossip failure signal → committed Failed is
	// ReconcileBatchDelay plus one quorum commit on a healthy cluster:
	// measured 21–24 ms with the test profile (20 ms delay) and 101–103 ms
	// with the defaults (100 ms delay), so bounds sit on both sides of each;
	// anything past ~0.2 s means slow commits, and seconds mean the commit
	// waited for an election or for a quorum.
	failureDetectionBuckets = []float64{.01, .025, .05, .075, .125, .2, .35, .5, 1, 2.5, 5, 10, 30}
	// failureSilenceBuckets: last lease grant → committed Failed covers the
	// whole detection (probe, suspicion, commit) plus up to one renewal
	// interval of silence before the crash. Measured 1.1–1.8 s with the test
	// profile and 5.3–7.6 s with the default LAN profile (3 servers, 1
	// client; crash → committed 0.9–1.2 s and 5.2–6.6 s). Suspicion grows
	// with log10(cluster size): ~9–11 s at 100 nodes, ~13–15 s at 1,000.
	failureSilenceBuckets = []float64{.5, 1, 1.5, 2, 3, 4, 5, 6, 7, 8, 10, 15, 20, 30, 60}
	// requestBuckets: Place through any node, including forwarding and group
	// commit: 0.4 ms on average in-process with in-memory Raft (30
	// sequential calls through 5 nodes took 11.5 ms); with raft-wal and
	// fsync (BenchmarkPlaceThroughput, 3 voters) p50 0.6–0.9 ms and p99
	// 2–4 ms at 1 in flight, p50 2–3 ms and p99 8 ms at 64 in flight; up to
	// QuorumTimeout (5 s) without quorum.
	requestBuckets = []float64{.00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}
	// commitBuckets: one group-commit batch (one Raft entry): sub-ms with
	// in-memory stores, ms with fsync (raft-wal ≈ 0.25 ms/entry batched).
	commitBuckets = []float64{.00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}
	// batchBuckets: placements per Raft entry (consensus.MaxBatchItems caps it).
	batchBuckets = []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096}
	// migrationBuckets: start → commit/abort: a few ms for small states on
	// a LAN, up to PhaseTimeout (default 30 s) for a stuck one.
	migrationBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}
)

// Metrics holds the node's collectors. Counters and histograms are updated by
// the node as things happen; gauges that mirror node state are read from the
// Source at scrape time.
type Metrics struct {
	// Membership.
	Epoch             prometheus.Gauge
	MembersByStatus   *prometheus.GaugeVec
	ViewChanges       prometheus.Counter
	EventsDropped     prometheus.Counter
	ReconcileRuns     *prometheus.CounterVec
	ViewChangeCommits *prometheus.CounterVec
	FailureDetection  prometheus.Histogram
	FailureSilence    prometheus.Histogram

	// Leadership.
	LeaderChanges prometheus.Counter

	// Placement, leases, fencing.
	PlacementRequests *prometheus.CounterVec
	PlaceLatency      prometheus.Histogram
	PlaceCommit       prometheus.Histogram
	PlaceBatch        prometheus.Histogram
	StaleRejections   prometheus.Counter
	Fenced            prometheus.Counter
	LeaseRenewals     *prometheus.CounterVec

	// Migration.
	MigrationsStarted prometheus.Counter
	Migrations        *prometheus.CounterVec
	MigrationDuration prometheus.Histogram
	MigrationBytes    prometheus.Counter
	ChecksumFailures  prometheus.Counter

	src Source

	mu            sync.Mutex
	failureSignal map[string]time.Time
	lastEpoch     uint64
}

// New declares every kelpie_* metric and registers it on reg. src is read at
// scrape time. Registering twice on one registry fails (duplicate metrics).
func New(reg prometheus.Registerer, src Source) (*Metrics, error) {
	m := &Metrics{
		src:           src,
		failureSignal: make(map[string]time.Time),

		Epoch: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kelpie_view_epoch",
			Help: "Epoch of the committed membership view this node serves.",
		}),
		MembersByStatus: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "kelpie_members",
			Help: "Members of the committed view this node serves, by committed status.",
		}, []string{"status"}),
		ViewChanges: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kelpie_view_changes_observed_total",
			Help: "Committed view changes (epochs) observed by this node.",
		}),
		EventsDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kelpie_view_events_dropped_total",
			Help: "View events dropped because the Events() consumer was slow.",
		}),
		ReconcileRuns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kelpie_reconcile_runs_total",
			Help: "Leader reconcile passes of gossip against the committed view, by result (in_sync, committed, error; held: a Failed verdict held back because the member still accepts connections).",
		}, []string{"result"}),
		ViewChangeCommits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kelpie_view_change_commits_total",
			Help: "View changes committed by this node as leader, by reason.",
		}, []string{"reason"}),
		FailureDetection: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "kelpie_failure_detection_seconds",
			Help:    "Time from the first gossip failure signal for a member to the commit of it as Failed (leader only).",
			Buckets: failureDetectionBuckets,
		}),
		FailureSilence: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "kelpie_failure_detection_since_last_lease_seconds",
			Help:    "Time from the leader's last lease grant to a member to the commit of it as Failed: crash to committed Failed, within one renewal interval (leader only).",
			Buckets: failureSilenceBuckets,
		}),
		LeaderChanges: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kelpie_leader_changes_total",
			Help: "Times this node gained or lost Raft leadership.",
		}),
		PlacementRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kelpie_placement_requests_total",
			Help: "Place calls handled by this node, by outcome (ok, no_quorum, not_leader, no_capacity, no_eligible_node, lease_pending, invalid, timeout, error). A call forwarded to the leader is counted where it entered and again on the leader.",
		}, []string{"outcome"}),
		PlaceLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "kelpie_placement_request_seconds",
			Help:    "Latency of successful Place calls made through this node (including forwarding to the leader).",
			Buckets: requestBuckets,
		}),
		PlaceCommit: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "kelpie_placement_commit_seconds",
			Help:    "Time for the leader to commit one group-commit batch of placements.",
			Buckets: commitBuckets,
		}),
		PlaceBatch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "kelpie_placement_batch_size",
			Help:    "Placements per Raft entry (group-commit batch size, leader only).",
			Buckets: batchBuckets,
		}),
		StaleRejections: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kelpie_stale_token_rejections_total",
			Help: "Work refused by this node because it carried an older fencing token.",
		}),
		Fenced: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kelpie_self_fencing_events_total",
			Help: "Times this node's lease ran out and it deactivated all its actors.",
		}),
		LeaseRenewals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kelpie_lease_renewals_total",
			Help: "Membership lease renewals attempted by this node, by result (granted, failed).",
		}, []string{"result"}),
		MigrationsStarted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kelpie_migrations_started_total",
			Help: "Migrations started by this node as leader.",
		}),
		Migrations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kelpie_migrations_total",
			Help: "Migrations ended by this node as leader, by outcome (committed, aborted).",
		}, []string{"outcome"}),
		MigrationDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "kelpie_migration_duration_seconds",
			Help:    "Time from MigrationStarted to its commit or abort (leader only).",
			Buckets: migrationBuckets,
		}),
		MigrationBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kelpie_migration_bytes_total",
			Help: "Actor state bytes moved by committed migrations (leader only).",
		}),
		ChecksumFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kelpie_migration_checksum_failures_total",
			Help: "Migration frames this node refused because the state did not match its checksum.",
		}),
	}
	st := &stateCollector{src: src,
		isLeader: prometheus.NewDesc("kelpie_is_leader",
			"1 if this node is the Raft leader, else 0.", nil, nil),
		term: prometheus.NewDesc("kelpie_raft_term",
			"Current Raft term seen by this server (servers only).", nil, nil),
		commitIndex: prometheus.NewDesc("kelpie_raft_commit_index",
			"Raft commit index on this server (servers only).", nil, nil),
		appliedIndex: prometheus.NewDesc("kelpie_raft_applied_index",
			"Raft index applied to this server's state machine (servers only).", nil, nil),
		voters: prometheus.NewDesc("kelpie_voters",
			"Voters in the Raft configuration as this server sees it (servers only).", nil, nil),
		votersReachable: prometheus.NewDesc("kelpie_voters_reachable",
			"Voters of the Raft configuration that gossip shows alive, this server included; below a majority of kelpie_voters the node refuses writes with ErrNoQuorum (servers only).", nil, nil),
		votersHealthy: prometheus.NewDesc("kelpie_voters_healthy",
			"Voters that voter management (autopilot) reports healthy (leader only).", nil, nil),
		votersTarget: prometheus.NewDesc("kelpie_voters_target",
			"Voters the leader keeps when enough healthy servers exist (configured; servers only).", nil, nil),
		gossipMembers: prometheus.NewDesc("kelpie_gossip_members",
			"Members this node's gossip layer knows, by gossip status (alive, leaving, left, failed, unknown).", []string{"status"}, nil),
		gossipDropped: prometheus.NewDesc("kelpie_gossip_events_dropped_total",
			"Gossip events dropped because the node's event channel was full (repaired by the periodic reconcile).", nil, nil),
		placements: prometheus.NewDesc("kelpie_placements",
			"Committed placements in this server's replica (servers only).", nil, nil),
		nodePlacements: prometheus.NewDesc("kelpie_node_placements",
			"Committed placements per node of the committed view, from this server's replica (servers only).", []string{"node"}, nil),
		localActors: prometheus.NewDesc("kelpie_local_actors",
			"Actors active on this node.", nil, nil),
		leaseRemaining: prometheus.NewDesc("kelpie_lease_remaining_seconds",
			"Time left on this node's membership lease (0 when expired, fenced or never granted).", nil, nil),
		leaseFenced: prometheus.NewDesc("kelpie_lease_fenced",
			"1 while this node is fenced (lease ran out: actors deactivated, work refused until it renews), else 0.", nil, nil),
		leaseDuration: prometheus.NewDesc("kelpie_lease_duration_seconds",
			"Configured membership lease length.", nil, nil),
		leaseMargin: prometheus.NewDesc("kelpie_lease_margin_seconds",
			"Configured margin the leader adds before it treats a lease as surely expired.", nil, nil),
		leaseRenewInterval: prometheus.NewDesc("kelpie_lease_renew_interval_seconds",
			"Interval between lease renewals (lease duration / 3).", nil, nil),
	}
	cs := []prometheus.Collector{
		m.Epoch, m.MembersByStatus, m.ViewChanges, m.EventsDropped, m.ReconcileRuns,
		m.ViewChangeCommits, m.FailureDetection, m.FailureSilence, m.LeaderChanges,
		m.PlacementRequests, m.PlaceLatency, m.PlaceCommit, m.PlaceBatch, m.StaleRejections,
		m.Fenced, m.LeaseRenewals,
		m.MigrationsStarted, m.Migrations, m.MigrationDuration, m.MigrationBytes, m.ChecksumFailures,
		st,
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	for _, s := range committedStatuses {
		m.MembersByStatus.WithLabelValues(s.String()).Set(0)
	}
	for _, o := range PlacementOutcomes {
		m.PlacementRequests.WithLabelValues(o)
	}
	for _, o := range MigrationOutcomes {
		m.Migrations.WithLabelValues(o)
	}
	for _, r := range ReconcileResults {
		m.ReconcileRuns.WithLabelValues(r)
	}
	for _, r := range LeaseRenewalResults {
		m.LeaseRenewals.WithLabelValues(r)
	}
	return m, nil
}

// ObserveView records a newly published committed view.
func (m *Metrics) ObserveView(v consensus.View) {
	m.Epoch.Set(float64(v.Epoch))
	counts := map[consensus.Status]int{}
	for _, mem := range v.Members {
		counts[mem.Status]++
	}
	for _, s := range committedStatuses {
		m.MembersByStatus.WithLabelValues(s.String()).Set(float64(counts[s]))
	}
	m.mu.Lock()
	if v.Epoch > m.lastEpoch {
		m.ViewChanges.Add(float64(v.Epoch - m.lastEpoch))
		m.lastEpoch = v.Epoch
	}
	m.mu.Unlock()
}

// NoteFailureSignal records the first gossip failure signal for a member.
func (m *Metrics) NoteFailureSignal(member string, at time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.failureSignal[member]; !ok {
		m.failureSignal[member] = at
	}
}

// ClearFailureSignal forgets a member's failure signal (it came back).
func (m *Metrics) ClearFailureSignal(member string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.failureSignal, member)
}

// ObserveFailedCommit records the detection latency of a member committed as
// Failed at now: since its first gossip failure signal, if one was seen, and
// since this leader last granted it a lease, if it did.
func (m *Metrics) ObserveFailedCommit(member string, now time.Time) {
	m.mu.Lock()
	at, ok := m.failureSignal[member]
	delete(m.failureSignal, member)
	m.mu.Unlock()
	if ok && !now.Before(at) {
		m.FailureDetection.Observe(now.Sub(at).Seconds())
	}
	if g, ok := m.src.MetricsLastLeaseGrant(member); ok && !now.Before(g) {
		m.FailureSilence.Observe(now.Sub(g).Seconds())
	}
}

// PlacementRequest records one Place call's outcome and, when it succeeded,
// its latency.
func (m *Metrics) PlacementRequest(outcome string, d time.Duration) {
	m.PlacementRequests.WithLabelValues(outcome).Inc()
	if outcome == "ok" {
		m.PlaceLatency.Observe(d.Seconds())
	}
}

// MigrationStarted counts a started migration.
func (m *Metrics) MigrationStarted() { m.MigrationsStarted.Inc() }

// MigrationEnded records a migration's outcome, duration and bytes moved.
func (m *Metrics) MigrationEnded(outcome string, d time.Duration, bytes int64) {
	m.Migrations.WithLabelValues(outcome).Inc()
	if d > 0 {
		m.MigrationDuration.Observe(d.Seconds())
	}
	if bytes > 0 {
		m.MigrationBytes.Add(float64(bytes))
	}
}
