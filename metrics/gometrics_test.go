package metrics

import (
	"strings"
	"sync"
	"testing"
	"time"

	gometrics "github.com/hashicorp/go-metrics"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func TestPromName(t *testing.T) {
	for _, c := range []struct {
		key     []string
		counter bool
		want    string
	}{
		{[]string{"raft", "commitTime"}, false, "raft_commit_time"},
		{[]string{"raft", "replication", "appendEntries", "rpc"}, false, "raft_replication_append_entries_rpc"},
		{[]string{"serf", "member", "join"}, true, "serf_member_join_total"},
		{[]string{"memberlist", "udp", "sent"}, true, "memberlist_udp_sent_total"},
		{[]string{"raft", "fsm", "applyBatchNum"}, false, "raft_fsm_apply_batch_num"},
		{[]string{"raft", "RPCTime"}, false, "raft_rpc_time"},
		{[]string{"serf", "queue", "Event"}, false, "serf_queue_event"},
		{[]string{"raft", "leader", "dispatchNumLogs"}, false, "raft_leader_dispatch_num_logs"},
		{[]string{"raft", "state", "leader"}, true, "raft_state_leader_total"},
		{[]string{"x", "already_total"}, true, "x_already_total"},
		{[]string{"raft", "peer", "127.0.0.1:7502"}, false, "raft_peer_127_0_0_1_7502"},
		{[]string{"a--b", "", "c"}, false, "a_b_c"},
		{[]string{"9lives"}, false, "x_9lives"},
		{[]string{"lastContact"}, false, "last_contact"},
		{[]string{"v2Time"}, false, "v2_time"},
	} {
		if got := promName(c.key, c.counter); got != c.want {
			t.Errorf("promName(%q, %v) = %q, want %q", c.key, c.counter, got, c.want)
		}
	}
}

// TestGoMetricsBridge installs the bridge (process-global, like in kelpied)
// on two registries, emits the kinds of metrics raft, serf and memberlist
// emit, and checks names, types, idempotency, lint and collision handling.
func TestGoMetricsBridge(t *testing.T) {
	regA := prometheus.NewRegistry()
	regB := prometheus.NewPedanticRegistry()
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ { // concurrent and repeated installs
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, r := range []prometheus.Registerer{regA, regB} {
				if err := InstallGoMetrics(r); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if err := InstallGoMetrics(nil); err == nil {
		t.Error("InstallGoMetrics(nil) succeeded")
	}
	// Our own metrics live beside the bridge without conflict.
	if _, err := New(regA, &fakeSource{server: true, leader: true}); err != nil {
		t.Fatal(err)
	}

	gometrics.IncrCounter([]string{"serf", "member", "join"}, 1)
	gometrics.IncrCounter([]string{"serf", "member", "join"}, 2)
	gometrics.IncrCounterWithLabels([]string{"raft", "replication", "appendEntries", "logs"}, 5,
		[]gometrics.Label{{Name: "peerId", Value: "s2"}})
	gometrics.SetGauge([]string{"raft", "commitNumLogs"}, 3)
	gometrics.SetPrecisionGauge([]string{"memberlist", "health", "score"}, 0)
	gometrics.MeasureSince([]string{"raft", "commitTime"}, time.Now().Add(-4*time.Millisecond))
	gometrics.AddSample([]string{"memberlist", "gossip"}, 0.2)
	gometrics.AddSample([]string{"serf", "coordinate", "adjustment-ms"}, 2.5)
	// Collisions: a gauge under a summary's name, and a counter named like
	// the summary's _count series. Both must be dropped, not break scrapes.
	gometrics.SetGauge([]string{"raft", "commitTime"}, 1)
	gometrics.SetGauge([]string{"memberlist", "gossip", "count"}, 1)
	gometrics.SetGauge([]string{"kelpie", "view", "epoch"}, 1) // our namespace

	for name, reg := range map[string]*prometheus.Registry{"registry": regA, "pedantic registry": regB} {
		mfs := gathered(t, reg) // fails on duplicate registration or collisions
		for want, typ := range map[string]dto.MetricType{
			"serf_member_join_total":                     dto.MetricType_COUNTER,
			"raft_replication_append_entries_logs_total": dto.MetricType_COUNTER,
			"raft_commit_num_logs":                       dto.MetricType_GAUGE,
			"memberlist_health_score":                    dto.MetricType_GAUGE,
			"raft_commit_time":                           dto.MetricType_SUMMARY,
			"memberlist_gossip":                          dto.MetricType_SUMMARY,
			"kelpie_gometrics_dropped_total":             dto.MetricType_COUNTER,
		} {
			mf, ok := mfs[want]
			if !ok {
				t.Errorf("%s: %s missing; have %v", name, want, keys(mfs))
				continue
			}
			if mf.GetType() != typ {
				t.Errorf("%s: %s is %v, want %v", name, want, mf.GetType(), typ)
			}
		}
		if got := mfs["serf_member_join_total"].GetMetric()[0].GetCounter().GetValue(); got < 3 {
			t.Errorf("%s: serf_member_join_total = %v, want ≥ 3", name, got)
		}
		if h := mfs["serf_member_failed_total"].GetHelp(); !strings.Contains(h, "failed events") {
			t.Errorf("%s: serf_member_failed_total help %q, want the declared one", name, h)
		}
		if got := mfs["serf_coordinate_adjustment_seconds"].GetMetric()[0].GetSummary().GetSampleSum(); got < .0024 || got > .0026 {
			t.Errorf("%s: serf_coordinate_adjustment_seconds sum %v, want 0.0025 (2.5 ms)", name, got)
		}
		l := mfs["raft_replication_append_entries_logs_total"].GetMetric()[0].GetLabel()
		if len(l) != 1 || l[0].GetName() != "peer_id" {
			t.Errorf("%s: labels %v, want peer_id", name, l)
		}
		if got := mfs["kelpie_gometrics_dropped_total"].GetMetric()[0].GetCounter().GetValue(); got < 3 {
			t.Errorf("%s: dropped = %v, want ≥ 3", name, got)
		}
		for n := range mfs {
			if n == "memberlist_gossip_count" || strings.HasPrefix(n, "kelpie_view_epoch") && reg == regB {
				t.Errorf("%s: colliding %s exposed", name, n)
			}
		}
		for _, p := range lint(t, reg) {
			t.Errorf("%s: lint: %s: %s", name, p.Metric, p.Text)
		}
	}
}

func keys(m map[string]*dto.MetricFamily) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
