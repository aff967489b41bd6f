package cluster

import (
	"fmt"
	"log/slog"
	"math"
	"os"
	"runtime/metrics"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"testing"

	gometrics "github.com/hashicorp/go-metrics"
)

// Diagnostics for the scale benchmark, off unless KELPIE_BENCH_SCALE_DIAG
// names a directory: the servers log at Info to stderr, the storm is CPU
// profiled into that directory (the clients' process), and every progress
// line carries the Go scheduler's run-queue latency and the gossip counters
// summed over the in-process members (go-metrics is process-global).
const envBenchScaleDiag = "KELPIE_BENCH_SCALE_DIAG"

func scaleDiagDir() string { return os.Getenv(envBenchScaleDiag) }

// scaleServerLog gives the servers a logger when diagnosing.
func scaleServerLog(c *Config) {
	scaleProfile(c)
	if scaleDiagDir() != "" {
		c.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})).With("node", c.NodeID)
	}
}

// startScaleProfile starts a CPU profile of the storm when diagnosing; the
// returned func stops it.
func startScaleProfile(t *testing.T, name string) func() {
	dir := scaleDiagDir()
	if dir == "" {
		return func() {}
	}
	f, err := os.Create(dir + "/" + name)
	if err != nil {
		t.Logf("profile: %v", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		t.Logf("profile: %v", err)
		f.Close()
		return func() {}
	}
	return func() { pprof.StopCPUProfile(); f.Close() }
}

// schedLatency reports the Go scheduler's run-queue latency (time a
// runnable goroutine waited for a CPU) since the previous call: p50, p99
// and max bucket, the measure of how starved Raft's goroutines are.
func schedLatency(prev *metrics.Float64Histogram) (string, *metrics.Float64Histogram) {
	s := []metrics.Sample{{Name: "/sched/latencies:seconds"}}
	metrics.Read(s)
	h := s[0].Value.Float64Histogram()
	counts := slices.Clone(h.Counts)
	if prev != nil {
		for i := range counts {
			counts[i] -= prev.Counts[i]
		}
	}
	var total uint64
	for _, c := range counts {
		total += c
	}
	q := func(p float64) float64 {
		var acc uint64
		for i, c := range counts {
			acc += c
			if float64(acc) >= p*float64(total) {
				return h.Buckets[i+1]
			}
		}
		return math.Inf(1)
	}
	mx := 0.0
	for i, c := range counts {
		if c > 0 {
			mx = h.Buckets[i+1]
		}
	}
	cur := &metrics.Float64Histogram{Counts: slices.Clone(h.Counts), Buckets: h.Buckets}
	if total == 0 {
		return " sched: -", cur
	}
	return fmt.Sprintf(" sched latency p50 %.2gms p99 %.2gms max<%.2gms", q(0.5)*1e3, q(0.99)*1e3, mx*1e3), cur
}

// countSink counts go-metrics counter increments by key (fleet-wide:
// go-metrics is process-global); everything else is dropped.
type countSink struct {
	gometrics.BlackholeSink
	mu sync.Mutex
	n  map[string]float64
}

func (s *countSink) IncrCounter(key []string, val float32) {
	s.mu.Lock()
	s.n[strings.Join(key, ".")] += float64(val)
	s.mu.Unlock()
}

func (s *countSink) IncrCounterWithLabels(key []string, val float32, _ []gometrics.Label) {
	s.IncrCounter(key, val)
}

var scaleSink = &countSink{n: map[string]float64{}}

// installCountSink makes go-metrics count into scaleSink (the benchmark
// waits for quiet gossip with it; diagnostics print it).
func installCountSink() {
	conf := gometrics.DefaultConfig("")
	conf.EnableHostname, conf.EnableRuntimeMetrics, conf.EnableServiceLabel = false, false, false
	_, _ = gometrics.NewGlobal(conf, scaleSink)
}

// gossipMessages is the number of alive, suspect and dead messages the
// fleet has handled so far.
func gossipMessages() float64 {
	scaleSink.mu.Lock()
	defer scaleSink.mu.Unlock()
	return scaleSink.n["memberlist.msg.alive"] + scaleSink.n["memberlist.msg.suspect"] + scaleSink.n["memberlist.msg.dead"]
}

// gossipCounts lists the fleet-wide gossip counters worth watching.
func gossipCounts() string {
	if scaleDiagDir() == "" {
		return ""
	}
	scaleSink.mu.Lock()
	defer scaleSink.mu.Unlock()
	var out []string
	for _, k := range []string{"memberlist.msg.suspect", "memberlist.msg.dead", "memberlist.msg.alive", "memberlist.degraded.probe",
		"memberlist.degraded.timeout", "serf.member.join", "serf.member.failed", "serf.member.flap", "serf.member.update"} {
		out = append(out, fmt.Sprintf("%s=%g", strings.TrimPrefix(strings.TrimPrefix(k, "memberlist."), "serf."), scaleSink.n[k]))
	}
	return " {" + strings.Join(out, " ") + "}"
}

// writeHeapProfile writes the heap profile into the diagnostics directory.
func writeHeapProfile(t *testing.T, name string) {
	dir := scaleDiagDir()
	if dir == "" {
		return
	}
	f, err := os.Create(dir + "/" + name)
	if err != nil {
		t.Logf("heap profile: %v", err)
		return
	}
	defer f.Close()
	if err := pprof.WriteHeapProfile(f); err != nil {
		t.Logf("heap profile: %v", err)
	}
}
