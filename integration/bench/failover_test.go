package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	cluster "github.com/kelpie/cluster"
	"github.com/kelpie/cluster/internal/benchrec"
)

// TestFailover: kill -9 of the node that owns an actor → the first
// successful invoke of that actor through another node, with the default
// profile on 5 nodes, KELPIE_BENCH_TRIALS times (default 20). Each trial
// places a fresh actor on a client, invokes it once (activated), kills the
// client, and invokes through a server until an invoke succeeds.
func TestFailover(t *testing.T) {
	if !enter(t) {
		return
	}
	trials := envInt("KELPIE_BENCH_TRIALS", 20)
	f := startFleet(t, 5, defaultProfile)
	time.Sleep(2 * time.Second)
	incr := json.RawMessage(`{"op":"incr"}`)
	var secs []float64
	for i := 0; i < trials; i++ {
		victim := f.clients[i%len(f.clients)]
		via := f.servers[i%len(f.servers)]
		actor := fmt.Sprintf("failover-%d", i)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		pr, err := f.Client(via).Place(ctx, actor, cluster.PlaceOptions{Prefer: victim})
		if err == nil && pr.Placement.Node != victim {
			err = fmt.Errorf("placed on %s, not %s", pr.Placement.Node, victim)
		}
		if err == nil {
			_, err = f.Client(via).Invoke(ctx, actor, incr)
		}
		cancel()
		if err != nil {
			t.Fatalf("trial %d: setting up %s on %s: %v", i, actor, victim, err)
		}
		inc := f.member(t, victim).Incarnation
		t0 := time.Now()
		if err := f.Kill(victim, "failover trial"); err != nil {
			t.Fatal(err)
		}
		var last error
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			res, err := f.Client(via).Invoke(ctx, actor, incr)
			cancel()
			if err == nil {
				d := time.Since(t0).Seconds()
				secs = append(secs, d)
				t.Logf("trial %d: %s back on %s after %.3f s", i, actor, res.Node, d)
				break
			}
			last = err
			if time.Since(t0) > time.Minute {
				t.Fatalf("trial %d: %s not back within a minute: %v", i, actor, last)
			}
			time.Sleep(20 * time.Millisecond)
		}
		f.restart(t, victim, inc)
		time.Sleep(time.Second)
	}
	params := defaultProfile.params(5)
	method := "kill -9 of the client kelpied owning a freshly placed, activated actor → first successful invoke of it through a server (invokes retried every 20 ms, 5 s timeout each); default lease 4 s + margin 500 ms"
	p99 := benchrec.Percentile(secs, 99)
	for _, r := range []benchrec.Record{
		{Metric: "owner_crash_to_invoke_p50", Value: benchrec.Percentile(secs, 50)},
		{Metric: "owner_crash_to_invoke_p99", Value: p99, Target: "<= 5 s", Pass: benchrec.Bool(p99 <= 5)},
		{Metric: "owner_crash_to_invoke_max", Value: benchrec.Percentile(secs, 100)},
	} {
		r.Section, r.Unit, r.Params, r.Method, r.Samples = "failover", "s", params, method, len(secs)
		line, err := benchrec.Emit(r)
		if err != nil {
			t.Error(err)
		}
		t.Log(line)
	}
}
