package metrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kelpie/cluster/consensus"
)

// Source is the live node state read at scrape time.
type Source interface {
	MetricsIsLeader() bool
	MetricsRaft() (term, commitIndex, appliedIndex uint64, ok bool)
	MetricsGossipDropped() uint64
	MetricsLeaseRemaining() time.Duration
}

// Metrics holds the node's collectors.
type Metrics struct {
	Epoch             prometheus.Gauge
	MembersByStatus   *prometheus.GaugeVec
	ViewChanges       prometheus.Counter
	EventsDropped     prometheus.Counter
	ReconcileRuns     *prometheus.CounterVec
	LeaderChanges     prometheus.Counter
	FailureDetection  prometheus.Histogram
	ViewChangeCommits *prometheus.CounterVec

	PlacementRequests *prometheus.CounterVec
	PlaceLatency      prometheus.Histogram
	PlaceCommit       prometheus.Histogram
	PlaceBatch        prometheus.Histogram
	StaleRejections   prometheus.Counter
	Fenced            prometheus.Counter
	LeaseRenewals     *prometheus.CounterVec

	MigrationsStarted prometheus.Counter
	Migrations        *prometheus.CounterVec
	MigrationDuration prometheus.Histogram
	MigrationBytes    prometheus.Counter
	ChecksumFailures  prometheus.Counter

	mu            sync.Mutex
	failureSignal map[string]time.Time
	lastEpoch     uint64
}

// New registers every metric on reg.
func New(reg prometheus.Registerer, src Source) (*Metrics, error) {
	m := &Metrics{
		Epoch: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kelpie_view_epoch", Help: "Epoch of the committed membership view this node serves.",
		}),
		MembersByStatus: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "kelpie_members", Help: "Members of the committed view this node serves, by committed status.",
		}, []string{"status"}),
		ViewChanges: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kelpie_view_changes_observed_total", Help: "Committed view changes observed (published) by this node.",
		}),
		EventsDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kelpie_view_events_dropped_total", Help: "View events dropped because the Events() consumer was slow.",
		}),
		ReconcileRuns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kelpie_reconcile_runs_total", Help: "Leader reconcile passes of gossip against the committed view, by result.",
		}, []string{"result"}),
		ViewChangeCommits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kelpie_view_change_commits_total", Help: "View changes committed by this node as leader, by reason.",
		}, []string{"reason"}),
		LeaderChanges: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kelpie_leader_changes_total", Help: "Times this node gained or lost Raft leadership.",
		}),
		FailureDetection: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "kelpie_failure_detection_seconds",
			Help:    "Time from the first gossip failure signal for a member to the commit of it as Failed (leader only).",
			Buckets: []float64{0.1, 0.25, 0.5, 1, 2, 3, 5, 8, 13, 21, 34, 60},
		}),
		PlacementRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kelpie_placement_requests_total", Help: "Place calls made through this node, by outcome (ok, no_quorum, no_capacity, not_leader, lease_pending, ...).",
		}, []string{"outcome"}),
		PlaceLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "kelpie_placement_request_seconds", Help: "Latency of Place calls made through this node (including forwarding).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}),
		PlaceCommit: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "kelpie_placement_commit_seconds", Help: "Time for the leader to commit one group-commit batch of placements.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}),
		PlaceBatch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "kelpie_placement_batch_size", Help: "Placements per Raft entry (group commit batch size).",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096},
		}),
		StaleRejections: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kelpie_stale_token_rejections_total", Help: "Work refused by this node because it carried an older fencing token.",
		}),
		Fenced: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kelpie_self_fencing_events_total", Help: "Times this node's lease ran out and it deactivated all its actors.",
		}),
		LeaseRenewals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kelpie_lease_renewals_total", Help: "Membership lease renewals attempted by this node, by result.",
		}, []string{"result"}),
		MigrationsStarted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kelpie_migrations_started_total", Help: "Migrations started by this node as leader.",
		}),
		Migrations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kelpie_migrations_total", Help: "Migrations ended by this node as leader, by outcome (committed, aborted).",
		}, []string{"outcome"}),
		MigrationDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "kelpie_migration_duration_seconds", Help: "Time from MigrationStarted to its commit or abort.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
		MigrationBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kelpie_migration_bytes_total", Help: "Actor state bytes moved by committed migrations.",
		}),
		ChecksumFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kelpie_migration_checksum_failures_total", Help: "Migration frames this node refused because the state did not match its checksum.",
		}),
		failureSignal: make(map[string]time.Time),
	}
	cs := []prometheus.Collector{m.Epoch, m.MembersByStatus, m.ViewChanges, m.EventsDropped, m.ReconcileRuns,
		m.ViewChangeCommits, m.LeaderChanges, m.FailureDetection,
		m.MigrationsStarted, m.Migrations, m.MigrationDuration, m.MigrationBytes, m.ChecksumFailures,
		m.PlacementRequests, m.PlaceLatency, m.PlaceCommit, m.PlaceBatch, m.StaleRejections, m.Fenced, m.LeaseRenewals,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "kelpie_lease_remaining_seconds", Help: "Time left on this node's membership lease (0 when expired or fenced).",
		}, func() float64 { return src.MetricsLeaseRemaining().Seconds() }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "kelpie_is_leader", Help: "1 if this node is the Raft leader, else 0.",
		}, func() float64 { return b2f(src.MetricsIsLeader()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "kelpie_raft_term", Help: "Current Raft term seen by this server.",
		}, func() float64 { t, _, _, _ := src.MetricsRaft(); return float64(t) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "kelpie_raft_commit_index", Help: "Raft commit index on this server.",
		}, func() float64 { _, c, _, _ := src.MetricsRaft(); return float64(c) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "kelpie_raft_applied_index", Help: "Raft index applied to this server's state machine.",
		}, func() float64 { _, _, a, _ := src.MetricsRaft(); return float64(a) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "kelpie_gossip_events_dropped_total", Help: "Gossip events dropped because the node's event channel was full (repaired by the periodic reconcile).",
		}, func() float64 { return float64(src.MetricsGossipDropped()) }),
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	for _, s := range []consensus.Status{consensus.StatusJoining, consensus.StatusActive, consensus.StatusLeaving, consensus.StatusFailed, consensus.StatusLeft} {
		m.MembersByStatus.WithLabelValues(s.String()).Set(0)
	}
	return m, nil
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// ObserveView records a newly published committed view.
func (m *Metrics) ObserveView(v consensus.View) {
	m.Epoch.Set(float64(v.Epoch))
	counts := map[consensus.Status]int{}
	for _, mem := range v.Members {
		counts[mem.Status]++
	}
	for _, s := range []consensus.Status{consensus.StatusJoining, consensus.StatusActive, consensus.StatusLeaving, consensus.StatusFailed, consensus.StatusLeft} {
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
// Failed at now, if a gossip signal for it was seen.
func (m *Metrics) ObserveFailedCommit(member string, now time.Time) {
	m.mu.Lock()
	at, ok := m.failureSignal[member]
	delete(m.failureSignal, member)
	m.mu.Unlock()
	if ok {
		m.FailureDetection.Observe(now.Sub(at).Seconds())
	}
}

// PlacementRequest records one Place call's outcome and latency.
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
