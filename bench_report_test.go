package cluster

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/kelpie/cluster/consensus"
	"github.com/kelpie/cluster/internal/benchload"
	"github.com/kelpie/cluster/internal/benchrec"
)

// The Test* functions here are the measured runs behind BENCHMARKS.md (make
// bench-place). They run only with KELPIE_BENCH=1, measure for a fixed time
// (KELPIE_BENCH_WINDOW, default 5s, after a 1s warm-up) and write their
// figures with benchrec to $KELPIE_BENCH_OUT. The Benchmark* functions in
// bench_test.go stay for ad-hoc `go test -bench` runs.

// benchInflight is the concurrency ladder of the placement figures.
var benchInflight = []int{1, 16, 64, 256, 4096}

func benchGate(t *testing.T) time.Duration {
	t.Helper()
	if os.Getenv("KELPIE_BENCH") != "1" {
		t.Skip("measured benchmark run: set KELPIE_BENCH=1 (make bench-place)")
	}
	window := 5 * time.Second
	if s := os.Getenv("KELPIE_BENCH_WINDOW"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("KELPIE_BENCH_WINDOW: %v", err)
		}
		window = d
	}
	return window
}

const benchWarmup = time.Second

func emit(t *testing.T, r benchrec.Record) {
	t.Helper()
	line, err := benchrec.Emit(r)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(line)
}

func target(ok bool) *bool { return benchrec.Bool(ok) }

// TestBenchPlacement measures, in one run: the raw-Raft baselines (a) one
// 64-byte entry per operation at each concurrency and (b) 100 operations per
// entry with 256 callers, then library Place on the leader of 3 voters at
// each concurrency and at half the peak rate, and the ratios the issue sets
// targets for. Every point gets a fresh cluster (TCP transport, raft-wal
// with fsync, each voter on its own loopback IP) so table sizes match.
func TestBenchPlacement(t *testing.T) {
	window := benchGate(t)
	ctx := context.Background()
	method := fmt.Sprintf("fixed %s window after %s warm-up, closed loop, fresh 3-voter cluster per point (TCP, raft-wal fsync on), one process", window, benchWarmup)
	params := func(inflight int, extra ...string) map[string]string {
		m := map[string]string{"inflight": strconv.Itoa(inflight), "voters": "3"}
		for i := 0; i+1 < len(extra); i += 2 {
			m[extra[i]] = extra[i+1]
		}
		return m
	}

	baseline := func(inflight, opsPerEntry int) benchload.Result {
		base, err := consensus.StartBaseline(t.TempDir(), []string{allocIP(), allocIP(), allocIP()})
		if err != nil {
			t.Fatal(err)
		}
		defer base.Close()
		return benchload.Closed(ctx, inflight, benchWarmup, window, func(context.Context, int64) error {
			return base.Apply(opsPerEntry, 30*time.Second)
		})
	}
	baseA := map[int]float64{}
	for _, c := range benchInflight {
		r := baseline(c, 1)
		if r.FirstErr != nil {
			t.Fatalf("baseline a inflight=%d: %v", c, r.FirstErr)
		}
		baseA[c] = r.PerSecond()
		emit(t, benchrec.Record{Section: "placement", Metric: "raft_baseline_a_ops_per_s", Value: r.PerSecond(), Unit: "ops/s",
			Params: params(c, "ops_per_entry", "1"), Method: "plain hashicorp/raft, counting FSM, 64-byte entries; " + method, Samples: r.Ops})
	}
	rb := baseline(256, 100)
	if rb.FirstErr != nil {
		t.Fatalf("baseline b: %v", rb.FirstErr)
	}
	baseB := rb.PerSecond() * 100
	emit(t, benchrec.Record{Section: "placement", Metric: "raft_baseline_b_ops_per_s", Value: baseB, Unit: "ops/s",
		Params: params(256, "ops_per_entry", "100"), Method: "plain hashicorp/raft, counting FSM, 100 operations per 64-byte entry; " + method, Samples: rb.Ops})

	// Each point runs in a subtest, so its cluster is closed (and its
	// placement tables garbage) before the next point starts: otherwise
	// every later point pays the earlier clusters' goroutines and the
	// collector's marking of their tables (millions of placements).
	place := func(name string, run func(leader *Node, op benchload.Op) benchload.Result) benchload.Result {
		var r benchload.Result
		ok := t.Run(name, func(t *testing.T) {
			leader := benchCluster(t, name, func(*Config) Host { return nil }, func(cfg *Config) {
				cfg.Raft = consensus.DefaultConfig()
				cfg.DataDir = t.TempDir()
				cfg.QuorumTimeout = 30 * time.Second
			})
			r = run(leader, func(ctx context.Context, i int64) error {
				_, err := leader.Place(ctx, name+"-"+strconv.FormatInt(i, 10), PlaceOptions{})
				return err
			})
		})
		if !ok {
			t.Fatalf("%s: the cluster failed (see the subtest)", name)
		}
		if r.FirstErr != nil {
			t.Fatalf("%s: %d errors, first: %v", name, r.Errors, r.FirstErr)
		}
		runtime.GC()
		return r
	}
	placeAt := map[int]float64{}
	peak := 0.0
	for _, c := range benchInflight {
		r := place(fmt.Sprintf("pl%d", c), func(_ *Node, op benchload.Op) benchload.Result {
			return benchload.Closed(ctx, c, benchWarmup, window, op)
		})
		placeAt[c] = r.PerSecond()
		peak = max(peak, r.PerSecond())
		m := "library Place on the leader; " + method
		emit(t, benchrec.Record{Section: "placement", Metric: "place_per_s", Value: r.PerSecond(), Unit: "ops/s", Params: params(c), Method: m, Samples: r.Ops})
		emit(t, benchrec.Record{Section: "placement", Metric: "place_p50", Value: r.P(50), Unit: "ms", Params: params(c), Method: m, Samples: r.Ops})
		emit(t, benchrec.Record{Section: "placement", Metric: "place_p99", Value: r.P(99), Unit: "ms", Params: params(c), Method: m, Samples: r.Ops})
	}

	ratioA := placeAt[256] / baseA[256]
	emit(t, benchrec.Record{Section: "placement", Metric: "place_vs_baseline_a", Value: ratioA, Unit: "ratio", Params: params(256),
		Target: ">= 10", Pass: target(ratioA >= 10), Method: "Place/s ÷ baseline (a) ops/s at 256 in flight, same run"})
	ratioB := placeAt[4096] / baseB
	emit(t, benchrec.Record{Section: "placement", Metric: "place_vs_baseline_b", Value: ratioB, Unit: "ratio", Params: params(4096, "baseline_inflight", "256"),
		Target: ">= 0.25", Pass: target(ratioB >= 0.25), Method: "Place/s at 4096 in flight ÷ baseline (b) ops/s (256 callers, 100 ops per entry), same run"})

	// Latency at half the peak rate: an open loop, so latency includes any
	// queueing behind the schedule.
	rate := peak / 2
	r := place("plhalf", func(_ *Node, op benchload.Op) benchload.Result {
		return benchload.Open(ctx, rate, 100_000, benchWarmup, window, op)
	})
	p := params(0, "rate_per_s", strconv.FormatFloat(rate, 'f', 0, 64))
	delete(p, "inflight")
	m := fmt.Sprintf("library Place, open loop at half the peak closed-loop rate (%.0f/s), latency from scheduled start; fixed %s window after %s warm-up", peak, window, benchWarmup)
	emit(t, benchrec.Record{Section: "placement", Metric: "place_half_peak_per_s", Value: r.PerSecond(), Unit: "ops/s", Params: p, Method: m, Samples: r.Ops})
	emit(t, benchrec.Record{Section: "placement", Metric: "place_half_peak_p50", Value: r.P(50), Unit: "ms", Params: p, Method: m, Samples: r.Ops})
	emit(t, benchrec.Record{Section: "placement", Metric: "place_half_peak_p99", Value: r.P(99), Unit: "ms", Params: p,
		Target: "<= 25 ms", Pass: target(r.P(99) <= 25), Method: m, Samples: r.Ops})
}

// TestBenchLookup measures the local read of a server's replica (10,000
// actors placed) with testing.Benchmark, from one goroutine and from
// GOMAXPROCS goroutines.
func TestBenchLookup(t *testing.T) {
	benchGate(t)
	n := benchNode(t, 10_000)
	ctx := context.Background()
	cases := []struct {
		name string
		fn   func(b *testing.B)
	}{
		{"single", func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if _, err := n.Lookup(ctx, "actor-4242"); err != nil {
					b.Fatal(err)
				}
			}
		}},
		{"parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := n.Lookup(ctx, "actor-4242"); err != nil {
						b.Fatal(err)
					}
				}
			})
		}},
	}
	for _, c := range cases {
		r := testing.Benchmark(c.fn)
		p := map[string]string{"goroutines": c.name, "actors": "10000", "gomaxprocs": strconv.Itoa(runtime.GOMAXPROCS(0))}
		m := "testing.Benchmark of Node.Lookup on a single-server node (local replica read)"
		ns := float64(r.T.Nanoseconds()) / float64(r.N)
		emit(t, benchrec.Record{Section: "lookup", Metric: "lookup_ns_per_op", Value: ns, Unit: "ns/op", Params: p,
			Target: "<= 50 ns/op", Pass: target(ns <= 50), Method: m, Samples: r.N})
		allocs := float64(r.AllocsPerOp())
		emit(t, benchrec.Record{Section: "lookup", Metric: "lookup_allocs_per_op", Value: allocs, Unit: "allocs/op", Params: p,
			Target: "0 allocs/op", Pass: target(allocs == 0), Method: m, Samples: r.N})
	}
}

// TestBenchMigration measures migrations of one actor back and forth between
// two nodes of a 3-server cluster, one at a time, for 1 KiB and 1 MiB of
// state.
func TestBenchMigration(t *testing.T) {
	window := benchGate(t)
	for _, size := range []int{1 << 10, 1 << 20} {
		prefix := fmt.Sprintf("mg%dk-", size>>10)
		leader := benchCluster(t, prefix, func(*Config) Host { return &blobHost{state: map[string][]byte{}, size: size} }, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 2*window+time.Minute)
		lat, elapsed := migrateLoop(t, ctx, leader, prefix+"2", prefix+"3", 0, window)
		cancel()
		ms := make([]float64, len(lat))
		for i, l := range lat {
			ms[i] = float64(l) / float64(time.Millisecond)
		}
		p := map[string]string{"state": fmt.Sprintf("%dKiB", size>>10), "servers": "3"}
		m := fmt.Sprintf("Node.Migrate on the leader, one actor moved back and forth between two nodes, one migration at a time, for %s (in-process 3-server cluster on loopback, in-memory Raft stores)", window)
		emit(t, benchrec.Record{Section: "migration", Metric: "migration_p50", Value: benchrec.Percentile(ms, 50), Unit: "ms", Params: p, Method: m, Samples: len(ms)})
		emit(t, benchrec.Record{Section: "migration", Metric: "migration_p99", Value: benchrec.Percentile(ms, 99), Unit: "ms", Params: p, Method: m, Samples: len(ms)})
		emit(t, benchrec.Record{Section: "migration", Metric: "migrations_per_s", Value: float64(len(ms)) / elapsed.Seconds(), Unit: "ops/s", Params: p, Method: m, Samples: len(ms)})
	}
}
