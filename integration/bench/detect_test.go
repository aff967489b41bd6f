package bench

import (
	"fmt"
	"testing"
	"time"

	"github.com/kelpie/cluster/consensus"
	"github.com/kelpie/cluster/internal/benchrec"
)

// TestDetection: kill -9 of a member → the leader's committed view shows it
// Failed, KELPIE_BENCH_TRIALS times (default 20) per profile and cluster
// size (KELPIE_BENCH_SIZES, default 5,50; KELPIE_BENCH_PROFILES picks
// profiles by name, default all). The victims are clients in turn;
// each is restarted (and Active again) before the next trial.
func TestDetection(t *testing.T) {
	if !enter(t) {
		return
	}
	trials := envInt("KELPIE_BENCH_TRIALS", 20)
	for _, n := range envInts("KELPIE_BENCH_SIZES", []int{5, 50}) {
		for _, p := range selectedProfiles() {
			t.Run(fmt.Sprintf("n=%d/%s", n, p.name), func(t *testing.T) {
				measureDetection(t, n, p, trials)
			})
		}
	}
}

func measureDetection(t *testing.T, n int, p profile, trials int) {
	f := startFleet(t, n, p)
	// Let every member see every other before the first kill.
	time.Sleep(2 * time.Second)
	var secs []float64
	missed := 0
	for i := 0; i < trials; i++ {
		victim := f.clients[i%len(f.clients)]
		inc := f.member(t, victim).Incarnation
		t0 := time.Now()
		if err := f.Kill(victim, "detection trial"); err != nil {
			t.Fatal(err)
		}
		seen, _, err := f.waitStatus(t, victim, consensus.StatusFailed, inc, 90*time.Second)
		if err != nil {
			t.Logf("trial %d: %v", i, err)
			missed++
		} else {
			d := seen.Sub(t0).Seconds()
			secs = append(secs, d)
			t.Logf("trial %d: %s committed Failed after %.3f s", i, victim, d)
		}
		f.restart(t, victim, inc)
		time.Sleep(time.Second)
	}
	params := p.params(n)
	method := fmt.Sprintf("kill -9 of a client kelpied (round-robin over %d clients, restarted between trials) → first leader view (blocking query) showing it Failed; %d processes in a private netns on loopback", len(f.clients), n)
	emit := func(metric string, v float64, target string, pass *bool) {
		line, err := benchrec.Emit(benchrec.Record{Section: "detection", Metric: metric, Value: v, Unit: "s",
			Params: params, Target: target, Pass: pass, Method: method, Samples: len(secs)})
		if err != nil {
			t.Error(err)
		}
		t.Log(line)
	}
	p99 := benchrec.Percentile(secs, 99)
	var target string
	var pass *bool
	if p.name == "default" && n == 5 {
		target, pass = "<= 3 s", benchrec.Bool(p99 <= 3 && missed == 0)
	}
	emit("crash_to_failed_p50", benchrec.Percentile(secs, 50), "", nil)
	emit("crash_to_failed_p99", p99, target, pass)
	emit("crash_to_failed_max", benchrec.Percentile(secs, 100), "", nil)
	if line, err := benchrec.Emit(benchrec.Record{Section: "detection", Metric: "crash_not_detected", Value: float64(missed),
		Unit: "count", Params: params, Method: "trials without a Failed commit within 90 s", Samples: trials}); err == nil {
		t.Log(line)
	}
	if missed > 0 {
		t.Errorf("%d of %d crashes not committed Failed within 90 s", missed, trials)
	}
}
