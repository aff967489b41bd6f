package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/kelpie/cluster/consensus"
	"github.com/kelpie/cluster/integration/nemesis"
	"github.com/kelpie/cluster/internal/benchrec"
)

// TestFalsePositives: 5 live nodes, default profile, 10% packet loss on
// every link between them and a 1 s SIGSTOP of a random node (servers
// included) every few seconds, for KELPIE_BENCH_FP_DURATION (default 10m).
// Counts Failed commits (every node stays alive, so each one is false).
func TestFalsePositives(t *testing.T) {
	if !enter(t) {
		return
	}
	dur := envDuration("KELPIE_BENCH_FP_DURATION", 10*time.Minute)
	const pause, loss = time.Second, 10
	f := startFleet(t, 5, defaultProfile)
	time.Sleep(2 * time.Second)
	net, err := nemesis.NewNet(f.IPs(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer net.Close()
	if err := net.Set(nemesis.Loss(loss), "benchmark"); err != nil {
		t.Fatal(err)
	}

	// The watcher follows whichever server leads and counts transitions
	// into Failed per member.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	falseFailed := map[string]int{}
	wg.Add(1)
	go func() {
		defer wg.Done()
		prev := map[string]consensus.Status{}
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			l := f.Leader()
			if l == "" {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			v, err := f.Client(l).View(ctx, 0, 0)
			cancel()
			if err != nil {
				continue
			}
			for _, m := range v.Members {
				if m.Status == consensus.StatusFailed && prev[m.ID] != consensus.StatusFailed {
					mu.Lock()
					falseFailed[m.ID]++
					mu.Unlock()
					t.Logf("FALSE POSITIVE: %s committed Failed (epoch %d, leader %s)", m.ID, v.Epoch, l)
				}
				prev[m.ID] = m.Status
			}
		}
	}()

	rng := rand.New(rand.NewPCG(7, 11))
	pauses := 0
	end := time.Now().Add(dur)
	for time.Now().Before(end) {
		victim := f.Names()[rng.IntN(len(f.Names()))]
		if err := f.Stop(victim); err != nil {
			t.Fatal(err)
		}
		time.Sleep(pause)
		if err := f.Cont(victim); err != nil {
			t.Fatal(err)
		}
		pauses++
		time.Sleep(time.Duration(3000+rng.IntN(4000)) * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if err := net.Heal(); err != nil {
		t.Fatal(err)
	}
	// A Failed member that came back rejoined as a new incarnation: count
	// those too, in case the watcher missed a short-lived Failed view.
	rejoins := 0
	for _, name := range f.Names() {
		if inc := f.member(t, name).Incarnation; inc > 1 {
			rejoins += int(inc - 1)
		}
	}
	mu.Lock()
	seen := 0
	for _, c := range falseFailed {
		seen += c
	}
	mu.Unlock()
	count := max(seen, rejoins)
	line, err := benchrec.Emit(benchrec.Record{Section: "detection", Metric: "false_failed_commits", Value: float64(count), Unit: "count",
		Params: map[string]string{"profile": "default", "nodes": "5", "duration": dur.String(), "loss_pct": fmt.Sprint(loss),
			"pause": pause.String(), "pauses": fmt.Sprint(pauses)},
		Target: "0", Pass: benchrec.Bool(count == 0), Samples: pauses,
		Method: fmt.Sprintf("%d%% random drop (nft) on every link between the 5 kelpied, a %s SIGSTOP of a random node every 4-8 s (%d pauses); Failed commits for live nodes counted from the leader's view every 100 ms and from incarnations at the end", loss, pause, pauses)})
	if err != nil {
		t.Error(err)
	}
	t.Log(line)
}
