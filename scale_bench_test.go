package cluster

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kelpie/cluster/gossip"
	"github.com/kelpie/cluster/internal/benchrec"
)

// The Scale benchmark of issue 9: a 1,000-member gossip fleet (3 voters and
// 997 clients, every member a real node on its own loopback IP) joining at
// once. The clients run in this process, the voters in a helper process
// (scale_voters_test.go says why). It runs only with KELPIE_BENCH_SCALE=1
// because it needs minutes and most of the machine:
//
//	KELPIE_BENCH_SCALE=1 KELPIE_BENCH_OUT=/tmp/x.jsonl \
//	  go test -run TestScaleJoinStorm1000 -count=1 -timeout 20m -v .
//
// KELPIE_BENCH_SCALE_N overrides the fleet size (for quick trial runs; the
// records say which size ran). KELPIE_BENCH_SCALE_PROFILE=memberlist-lan
// runs memberlist's LAN failure detector instead of the default profile,
// for comparison. KELPIE_BENCH_SCALE_RAMP=<duration> spreads the joins over
// that time instead of starting them at once (a diagnostic: the records
// carry no ramp, so do not mix such runs into the report).
// KELPIE_BENCH_SCALE_DIAG=<dir> adds diagnostics (scale_diag_test.go).
const (
	// stormLimit bounds the join storm; past it the records say how far it
	// got.
	stormLimit = 3 * time.Minute
	// settleLimit bounds the wait for the storm's gossip to die down
	// before the steady-state CPU and memory are measured.
	settleLimit = 2 * time.Minute

	envBenchScale  = "KELPIE_BENCH_SCALE"
	envBenchScaleN = "KELPIE_BENCH_SCALE_N"
)

// scaleProfile makes a harness node run the production profile
// (DefaultConfig: the LAN gossip profile, 100 ms reconcile batching, 4 s
// leases, 30 s follow waits, default Raft timings) instead of TestConfig's
// twitchy one. Only what in-process members cannot share stays: ephemeral
// ports, their own loopback IP and data dir. No fault filter and no logger:
// both would cost per packet / per line at 1,000 members.
func scaleProfile(c *Config) {
	d := DefaultConfig()
	d.NodeID, d.BindAddr = c.NodeID, c.BindAddr
	d.HTTPPort, d.GossipPort, d.RaftPort = 0, 0, 0
	d.Server, d.BootstrapExpect, d.DataDir = c.Server, c.BootstrapExpect, c.DataDir
	if scaleProfileName() == "memberlist-lan" {
		// memberlist's LAN failure detector, for comparison runs.
		d.Gossip.ProbeInterval, d.Gossip.ProbeTimeout, d.Gossip.SuspicionMult = time.Second, 500*time.Millisecond, 4
	}
	*c = d
}

// scaleRamp is the time over which the joins are spread
// (KELPIE_BENCH_SCALE_RAMP, a Go duration); 0, the default, starts them all
// at once.
func scaleRamp(t *testing.T) time.Duration {
	s := os.Getenv("KELPIE_BENCH_SCALE_RAMP")
	if s == "" {
		return 0
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		t.Fatalf("KELPIE_BENCH_SCALE_RAMP=%q: need a duration >= 0", s)
	}
	return d
}

// scaleProfileName is the gossip profile the run uses: "default" unless
// KELPIE_BENCH_SCALE_PROFILE=memberlist-lan asks for memberlist's LAN
// failure detector (for comparison; the records carry the name).
func scaleProfileName() string {
	if os.Getenv("KELPIE_BENCH_SCALE_PROFILE") == "memberlist-lan" {
		return "memberlist-lan"
	}
	return "default"
}

// TestScaleJoinStorm1000 measures, in one run: crash → committed Failed at
// 5 members, the 1,000-member join storm (time until all are Active in the
// leader's committed view, epochs it produced), steady-state CPU and memory
// per member, and crash → committed Failed at 1,000 members.
func TestScaleJoinStorm1000(t *testing.T) {
	if os.Getenv(envBenchScale) != "1" {
		t.Skipf("the 1,000-member scale benchmark takes minutes and most of the machine; set %s=1 to run it", envBenchScale)
	}
	members := 1000
	if s := os.Getenv(envBenchScaleN); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 5 {
			t.Fatalf("%s=%q: need an integer >= 5", envBenchScaleN, s)
		}
		members = v
	}
	raiseNoFile(t)
	checkNoLeftovers(t)
	installCountSink()

	smallTrials, bigTrials := 10, 5
	if os.Getenv(envBenchScaleN) != "" {
		smallTrials, bigTrials = 3, 3 // a trial run
	}
	small := scaleCrashTrials(t, 5, smallTrials)

	big := newTestCluster(t)
	voters := startRemoteVoters(t) // why in another process: scale_voters_test.go
	runtime.GC()
	memBefore := memSnapshot()

	// Every member is started (listening) before the storm; the storm is
	// the joins, all at once, each through one of the three servers.
	clients := make([]*Node, 0, members-3)
	for i := 0; i < members-3; i++ {
		clients = append(clients, big.start(fmt.Sprintf("m%04d", i), nodeOpts{mutate: scaleProfile}))
	}
	epoch0 := voters.view().Epoch
	stopProfile := startScaleProfile(t, "storm.pprof")
	t0 := time.Now()
	stormCtx, stopStorm := context.WithTimeout(context.Background(), stormLimit)
	defer stopStorm()
	var wg sync.WaitGroup
	joinErrs := make(chan error, len(clients))
	ramp := scaleRamp(t)
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if ramp > 0 {
				time.Sleep(ramp * time.Duration(i) / time.Duration(len(clients)))
			}
			if err := c.Join(stormCtx, voters.seed(i)); err != nil {
				joinErrs <- fmt.Errorf("%s: %w", c.ID(), err)
			}
		}()
	}
	// The helper reports the committed view of whichever server leads
	// (leadership may move under the load), stamped when the leader had it.
	var allActive time.Duration
	var epochs uint64
	var stuck string // why the storm did not converge
	lastLog := t0
	_, sched := schedLatency(nil)
	for allActive == 0 && stuck == "" {
		v := voters.view()
		if v.Active >= members {
			allActive, epochs = v.At.Sub(t0), v.Epoch-epoch0
			break
		}
		if time.Since(t0) > stormLimit {
			allActive, epochs = time.Since(t0), v.Epoch-epoch0
			stuck = fmt.Sprintf("NOT REACHED: after %s only %d of %d Active (%d Joining), leader known: %v", stormLimit,
				v.Active, members, v.Joining, v.LeaderKnown)
		}
		if time.Since(lastLog) >= 5*time.Second {
			lastLog = time.Now()
			alive := 0
			for _, g := range clients[0].gossip.Members() {
				if g.Status == gossip.StatusAlive {
					alive++
				}
			}
			var lat string
			lat, sched = schedLatency(sched)
			t.Logf("storm +%.0fs: leader known %v, epoch %d: %d Active, %d Joining; %s's gossip sees %d alive;%s%s",
				time.Since(t0).Seconds(), v.LeaderKnown, v.Epoch, v.Active, v.Joining, clients[0].ID(), alive, lat, gossipCounts())
		}
		time.Sleep(10 * time.Millisecond)
	}
	stopProfile()
	wg.Wait()
	allJoined := time.Since(t0)
	close(joinErrs)
	failedJoins := 0
	for err := range joinErrs {
		failedJoins++
		if stuck == "" {
			t.Errorf("join: %v", err)
		}
	}
	n := strconv.Itoa(members)
	method := "all clients started, then Join called on all at once (seeds: one of the 3 servers each); time until the leader's committed view shows every member Active"
	if stuck != "" {
		method = stuck + "; " + method
	}
	emit(t, benchrec.Record{Section: "scale", Metric: "join_storm_all_active", Value: allActive.Seconds(), Unit: "s",
		Params: map[string]string{"members": n, "voters": "3", "profile": scaleProfileName()}, Target: "<= 30 s", Pass: benchrec.Bool(stuck == "" && allActive <= 30*time.Second),
		Method: method, Samples: 1})
	emit(t, benchrec.Record{Section: "scale", Metric: "join_storm_epochs", Value: float64(epochs), Unit: "count",
		Params: map[string]string{"members": n, "voters": "3", "profile": scaleProfileName()}, Target: "<= 20", Pass: benchrec.Bool(stuck == "" && epochs <= 20),
		Method: "leader's committed epoch when all were Active (or at the time limit) minus its epoch before the first Join", Samples: 1})
	if stuck == "" {
		emit(t, benchrec.Record{Section: "scale", Metric: "join_storm_all_joined", Value: allJoined.Seconds(), Unit: "s",
			Params: map[string]string{"members": n, "voters": "3", "profile": scaleProfileName()},
			Method: "time until every member's Join returned (it sees itself Active in the view it serves)", Samples: 1})
	} else {
		t.Logf("%d of %d Join calls had not returned at the limit", failedJoins, len(clients))
	}

	// Steady state: the storm's gossip goes on after the view converged
	// (every member re-broadcasts every join ~4·log10(N) times, a drain of
	// tens of seconds at 250 members), so wait until the fleet's
	// alive/suspect/dead traffic has stopped, then measure CPU and memory
	// (if the storm did not converge, this is the state it got stuck in,
	// and the records say so).
	settle, quiet := waitGossipQuiet(members, settleLimit)
	t.Logf("gossip quiet after %s: %v", settle.Round(time.Second), quiet)
	cpuWindow := 60 * time.Second
	if members < 1000 {
		cpuWindow = 20 * time.Second
	}
	votersCPU0 := procCPU(voters.cmd.Process.Pid)
	stopProfile = startScaleProfile(t, "steady.pprof")
	cpu := cpuOver(cpuWindow)
	stopProfile()
	cpu += procCPU(voters.cmd.Process.Pid) - votersCPU0
	runtime.GC()
	memAfter := memSnapshot()
	writeHeapProfile(t, "heap.pprof")
	perMemberCPU := cpu.Seconds() / cpuWindow.Seconds() / float64(members)
	emit(t, benchrec.Record{Section: "scale", Metric: "cpu_per_member", Value: perMemberCPU * 100, Unit: "% of a core",
		Params: map[string]string{"members": n, "profile": scaleProfileName(), "converged": strconv.FormatBool(stuck == "")},
		Method: fmt.Sprintf("user+system CPU time of the clients' process (getrusage) and the voters' process (/proc/<pid>/stat) over %s, divided by members and wall time; "+
			"measured from %s after the storm, %s", cpuWindow, settle.Round(time.Second), quietText(quiet)), Samples: 1})
	emit(t, benchrec.Record{Section: "scale", Metric: "mem_per_member_heap", Value: (memAfter.heap - memBefore.heap) / float64(members-3), Unit: "MiB",
		Params: map[string]string{"members": n},
		Method: "Go heap in use (runtime.MemStats.HeapInuse after GC) with the fleet joined minus before the clients started, divided by clients", Samples: 1})
	emit(t, benchrec.Record{Section: "scale", Metric: "mem_per_member_rss", Value: (memAfter.rss - memBefore.rss) / float64(members-3), Unit: "MiB",
		Params: map[string]string{"members": n},
		Method: "process RSS (/proc/self/status VmRSS) with the fleet joined minus before the clients started, divided by clients", Samples: 1})

	if stuck != "" {
		t.Errorf("join storm did not converge, so crash detection at N=%d cannot be measured: %s", members, stuck)
		return
	}
	// Crash → committed Failed at full size: crash random clients (never a
	// server), replacing each so the fleet stays at N.
	bigRes := crashLoop(t, big, voters, "m", bigTrials, func(id string) { big.join(big.start(id, nodeOpts{mutate: scaleProfile}), voters.seed(0), time.Minute) })
	smallP50, bigP50 := benchrec.Percentile(small, 50), benchrec.Percentile(bigRes, 50)
	emitCrash(t, members, bigRes)
	ratio := bigP50 / smallP50
	emit(t, benchrec.Record{Section: "scale", Metric: "crash_to_failed_ratio", Value: ratio, Unit: "ratio",
		Params: map[string]string{"members": n, "vs": "5", "profile": scaleProfileName(), "stat": "p50"}, Target: "<= 2", Pass: benchrec.Bool(ratio <= 2),
		Method: "p50 crash → committed Failed at N over p50 at 5 members, same topology, same profile", Samples: len(bigRes) + len(small)})
}

// scaleCrashTrials runs a 3-server + 2-client cluster with the scale profile
// and topology (voters in a helper process) and crashes a client trials
// times (replacing it), returning the seconds from crash to committed Failed
// on the leader.
func scaleCrashTrials(t *testing.T, members, trials int) []float64 {
	tc := newTestCluster(t)
	voters := startRemoteVoters(t)
	for i := 0; i < members-3; i++ {
		tc.join(tc.start(fmt.Sprintf("m%04d", i), nodeOpts{mutate: scaleProfile}), voters.seed(i), time.Minute)
	}
	res := crashLoop(t, tc, voters, "m", trials, func(id string) {
		tc.join(tc.start(id, nodeOpts{mutate: scaleProfile}), voters.seed(0), time.Minute)
	})
	emitCrash(t, members, res)
	for _, n := range tc.live() {
		n.Close()
	}
	voters.stop()
	return res
}

// crashLoop crashes (Close, no leave) a random live client whose ID starts
// with prefix, trials times, timing crash → the leader's committed Failed;
// after each it starts a replacement under a fresh ID with replace.
func crashLoop(t *testing.T, tc *testCluster, voters *remoteVoters, prefix string, trials int, replace func(id string)) []float64 {
	t.Helper()
	var out []float64
	for r := 0; r < trials; r++ {
		var victims []string
		for _, n := range tc.live() {
			if !n.IsServer() && len(n.ID()) > len(prefix) && n.ID()[:len(prefix)] == prefix {
				victims = append(victims, n.ID())
			}
		}
		id := victims[rand.IntN(len(victims))]
		victim := tc.node(id)
		waitFor(t, time.Minute, id+" holds a lease", func() bool { return victim.LeaseRemaining() > 0 })
		// Land the crash at a random point of the probe and renewal cycles.
		time.Sleep(time.Duration(1000+rand.IntN(1500)) * time.Millisecond)
		t0 := time.Now()
		go tc.stop(id)
		// The helper reports the leader's Failed commit with its time.
		var failedAt time.Time
		for ok := false; !ok; failedAt, ok = voters.failedAfter(id, t0) {
			if time.Since(t0) > 2*time.Minute {
				t.Fatalf("crash of %s: not committed Failed within 2m", id)
			}
			time.Sleep(5 * time.Millisecond)
		}
		d := failedAt.Sub(t0)
		out = append(out, d.Seconds())
		t.Logf("crash %d/%d of %s: committed Failed after %.3fs", r+1, trials, id, d.Seconds())
		replace(fmt.Sprintf("%sr%03d", prefix, r))
	}
	return out
}

func emitCrash(t *testing.T, members int, res []float64) {
	t.Helper()
	for _, st := range []struct {
		name string
		p    float64
	}{{"p50", 50}, {"max", 100}} {
		emit(t, benchrec.Record{Section: "scale", Metric: "crash_to_failed_" + st.name, Value: benchrec.Percentile(res, st.p), Unit: "s",
			Params: map[string]string{"members": strconv.Itoa(members), "voters": "3", "profile": scaleProfileName()},
			Method: "Close (no leave) of a random client → the leader's committed view showing it Failed (reported with its time by the voters' process); a replacement joins after each trial", Samples: len(res)})
	}
}

// raiseNoFile lifts the soft open-files limit to the hard one: each member
// holds gossip UDP+TCP sockets, an HTTP listener and peer connections.
func raiseNoFile(t *testing.T) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatalf("getrlimit: %v", err)
	}
	if lim.Cur < lim.Max {
		old := lim.Cur
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			t.Fatalf("setrlimit: %v", err)
		}
		t.Cleanup(func() { lim.Cur = old; _ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim) })
	}
	t.Logf("RLIMIT_NOFILE %d", lim.Cur)
}

// checkNoLeftovers fails the test if goroutines started during it are still
// running after every cleanup registered later (the clusters) has run.
func checkNoLeftovers(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(30 * time.Second)
		for runtime.NumGoroutine() > before+5 && time.Now().Before(deadline) {
			time.Sleep(200 * time.Millisecond)
		}
		if g := runtime.NumGoroutine(); g > before+5 {
			buf := make([]byte, 1<<20)
			t.Errorf("%d goroutines left after cleanup (%d before):\n%s", g, before, buf[:runtime.Stack(buf, true)])
		}
	})
}

type memSnap struct{ heap, rss float64 } // MiB

func memSnapshot() memSnap {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return memSnap{heap: float64(ms.HeapInuse) / (1 << 20), rss: rssMiB()}
}

// rssMiB reads VmRSS from /proc/self/status (0 where there is none).
func rssMiB() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	var kb float64
	for _, line := range strings.Split(string(b), "\n") {
		if _, err := fmt.Sscanf(line, "VmRSS: %f kB", &kb); err == nil {
			return kb / 1024
		}
	}
	return 0
}

// waitGossipQuiet waits until the fleet handled fewer than members/10
// alive, suspect and dead messages in 10 s (go-metrics counters summed over
// the in-process members), or limit passed. It returns how long it waited
// and whether the fleet went quiet.
func waitGossipQuiet(members int, limit time.Duration) (time.Duration, bool) {
	const window = 10 * time.Second
	t0 := time.Now()
	var hist []float64 // one sample a second
	for time.Since(t0) < limit {
		hist = append(hist, gossipMessages())
		if n := len(hist); n > int(window/time.Second) && hist[n-1]-hist[n-1-int(window/time.Second)] < float64(members)/10 {
			return time.Since(t0), true
		}
		time.Sleep(time.Second)
	}
	return time.Since(t0), false
}

func quietText(quiet bool) string {
	if quiet {
		return "once the fleet's gossip had gone quiet (fewer than N/10 alive/suspect/dead messages in 10 s)"
	}
	return fmt.Sprintf("when the wait for quiet gossip gave up (%s): the fleet was still exchanging alive/suspect/dead messages", settleLimit)
}

// cpuOver returns the process's user+system CPU time spent during d.
func cpuOver(d time.Duration) time.Duration {
	cpu := func() time.Duration {
		var ru syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	c0 := cpu()
	time.Sleep(d)
	return cpu() - c0
}
