package nemesis

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Scenario is a cluster, a workload and a nemesis schedule.
type Scenario struct {
	Name  string
	Seed  int64
	Nodes []NodeSpec // default: DefaultNodes
	// Workload shape (zero values take the workload's defaults).
	Workers  int
	Counters int
	Mix      Mix
	// Steps is the nemesis schedule, offsets from the start of the fault
	// phase.
	Steps []Step
	// Settle is how long the workload keeps running after everything is
	// healed (default 8s).
	Settle time.Duration
}

// Timeouts of a run.
const (
	formTimeout = 90 * time.Second
	finalReadTO = 20 * time.Second
)

// EnvSeed returns KELPIE_SEED if set (make integration SEED=…), else def.
func EnvSeed(def int64) int64 {
	if s := os.Getenv("KELPIE_SEED"); s != "" {
		if v, err := strconv.ParseInt(s, 10, 64); err == nil {
			return v
		}
	}
	return def
}

// EnvDuration returns KELPIE_DURATION if set (make integration DURATION=…),
// else def.
func EnvDuration(def time.Duration) time.Duration {
	if s := os.Getenv("KELPIE_DURATION"); s != "" {
		if v, err := time.ParseDuration(s); err == nil && v > 0 {
			return v
		}
	}
	return def
}

// Run executes sc inside the current (private) network namespace: starts
// the cluster, runs the workload and the schedule, heals, lets it settle,
// reads the final state, stops every process and runs every checker. On
// failure it reports the seed, the schedule as it ran, each failed checker
// with its offending operations, the node logs and where the history is;
// the run's directory is then kept (it is removed when the test passes).
func Run(t *testing.T, bin string, sc Scenario) {
	t.Helper()
	began := time.Now()
	phase := func(name string, since time.Time) { t.Logf("phase %-9s %6.1fs", name, time.Since(since).Seconds()) }
	dir, err := os.MkdirTemp("", "kelpie-nemesis-"+strings.ReplaceAll(sc.Name, "/", "_")+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if out := os.Getenv("KELPIE_TEST_LOG_DIR"); out != "" {
			keepArtifacts(dir, out, strings.ReplaceAll(t.Name(), "/", "_"))
		}
		if t.Failed() {
			// Keep the history, the logs and the activation logs; the Raft
			// data dirs (preallocated 64 MiB WAL segments) only on request.
			what := "Raft data dirs removed; KELPIE_NEMESIS_KEEP_DATA=1 keeps them"
			if os.Getenv("KELPIE_NEMESIS_KEEP_DATA") == "1" {
				what = "Raft data dirs kept"
			} else {
				datas, _ := filepath.Glob(filepath.Join(dir, "*", "data"))
				for _, d := range datas {
					os.RemoveAll(d)
				}
			}
			t.Logf("run directory kept for inspection: %s (history %s, node logs %s/*/kelpied.log; %s)", dir, filepath.Join(dir, "history.jsonl"), dir, what)
			return
		}
		os.RemoveAll(dir)
	})
	rec, err := NewRecorder(filepath.Join(dir, "history.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Close()
	specs := sc.Nodes
	if len(specs) == 0 {
		specs = DefaultNodes()
	}
	meta := Meta{Scenario: sc.Name, Seed: sc.Seed, LeaseNs: int64(4 * time.Second), Start: Mono(), WallStart: time.Now().UnixNano()}
	for _, s := range specs {
		meta.Nodes = append(meta.Nodes, NodeInfo{Name: s.Name, IP: s.IP, Server: s.Server})
	}
	for _, s := range sc.Steps {
		meta.Schedule = append(meta.Schedule, fmt.Sprintf("t+%.1fs %s", s.At.Seconds(), s.Desc))
	}
	rec.Meta(meta)
	t.Logf("scenario %s seed %d; schedule:\n  %s", sc.Name, sc.Seed, strings.Join(meta.Schedule, "\n  "))

	c, err := NewCluster(bin, dir, specs, rec, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	network, err := NewNet(c.IPs(), rec)
	if err != nil {
		t.Fatalf("nftables in the private namespace: %v", err)
	}
	defer network.Close()
	closed := false
	stopAll := func() {
		if !closed {
			closed = true
			c.Close()
		}
	}
	defer stopAll()
	failDump := func() {
		for _, n := range c.Nodes() {
			t.Logf("---- last lines of %s (%s) ----\n%s", n.Name, n.LogPath, n.LogTail(40))
		}
	}

	// Form.
	formStart := time.Now()
	for _, s := range specs {
		if err := c.Start(s.Name); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), formTimeout)
	_, err = c.WaitConverged(ctx, c.Names())
	cancel()
	if err != nil {
		failDump()
		t.Fatalf("cluster did not form: %v", err)
	}
	phase("form", formStart)

	// Fault phase, with the workload and the observers running.
	obs := NewObserver(c, rec)
	obs.Start()
	defer obs.Stop()
	wl := NewWorkload(c, rec, sc.Seed)
	if sc.Workers > 0 {
		wl.Workers = sc.Workers
	}
	if sc.Counters > 0 {
		wl.Counters = sc.Counters
	}
	if sc.Mix != (Mix{}) {
		wl.Mix = sc.Mix
	}
	wl.Start()
	defer wl.Stop() // on an early exit; Stop is idempotent
	env := &Env{C: c, Net: network, Rec: rec, Obs: obs, Rand: rand.New(rand.NewSource(sc.Seed)), Logf: t.Logf, down: map[string]string{}}
	faultStart := time.Now()
	schedErr := env.RunSchedule(context.Background(), faultStart, sc.Steps)
	phase("faults", faultStart)

	// Heal and settle.
	healStart := time.Now()
	if err := env.HealAll(); err != nil {
		t.Errorf("healing: %v", err)
	}
	healedAt := Mono()
	final := Final{HealedAt: healedAt}
	ctx, cancel = context.WithTimeout(context.Background(), ConvergenceBound)
	detail, err := c.WaitConverged(ctx, c.Names())
	cancel()
	final.Detail = detail
	if err == nil {
		final.Converged, final.ConvergedAt = true, Mono()
	}
	settle := sc.Settle
	if settle == 0 {
		settle = 8 * time.Second
	}
	if d := time.Until(healStart.Add(settle)); d > 0 {
		time.Sleep(d)
	}
	wl.Stop()
	phase("heal", healStart)

	// Final reads and state.
	finalStart := time.Now()
	leader, _ := env.Leader()
	final.Leader = leader
	via := leader
	if via == "" {
		via = c.Names()[0]
	}
	var reads sync.WaitGroup
	for i := 0; i < wl.Counters; i++ {
		reads.Add(1)
		go func() {
			defer reads.Done()
			wl.DoWithin(finalReadTO, FinalProcess, OpGet, CounterActor(i), via, "", false)
		}()
	}
	reads.Wait()
	final.Placements = settledPlacements(obs, c, 20*time.Second)
	if leader != "" {
		if v, ok := obs.ObserveView(context.Background(), c.Node(leader)); ok {
			final.View = v
		}
	}
	for _, s := range c.Servers() {
		cctx, ccancel := callCtx(5 * time.Second)
		ms, err := c.Client(s).Migrations(cctx, "")
		ccancel()
		if err != nil {
			t.Logf("migrations of %s: %v", s, err)
			continue
		}
		for _, m := range ms {
			rec.Migration(MigrationRec{Server: s, ID: m.ID, Actor: m.Actor, From: m.From, To: m.To, OldToken: m.OldToken, NewToken: m.NewToken, State: m.State, Reason: m.Reason, StartedAt: m.StartedAt, EndedAt: m.EndedAt})
		}
	}
	final.Live = c.Live()
	obs.Stop()
	stopAll()
	final.End = Mono()
	rec.Final(final)
	for _, n := range c.Nodes() {
		acts, err := n.ReadActivations()
		if err != nil {
			t.Errorf("activation log of %s: %v", n.Name, err)
		}
		for _, a := range acts {
			rec.Activation(a)
		}
	}
	if err := rec.Close(); err != nil {
		t.Errorf("history: %v", err)
	}
	phase("final", finalStart)

	// Judge.
	checkStart := time.Now()
	h := rec.History()
	VisualizeDir = dir
	results := RunCheckers(h)
	phase("check", checkStart)
	ok, unknown := 0, 0
	for _, o := range h.Ops {
		switch o.Result {
		case ResultOK:
			ok++
		case ResultUnknown:
			unknown++
		}
	}
	t.Logf("%d operations (%d ok, %d unknown), %d status/%d view observations, %d snapshots, %d activation events\n%s",
		len(h.Ops), ok, unknown, len(h.Statuses), len(h.Views), len(h.Snapshots), len(h.Activations), Summary(results))
	failed := schedErr != nil
	for _, r := range results {
		if !r.OK() {
			failed = true
		}
	}
	if failed {
		var b strings.Builder
		fmt.Fprintf(&b, "SCENARIO %s FAILED (seed %d; rerun: KELPIE_SEED=%d go test -run '%s' ./integration/)\n", sc.Name, sc.Seed, sc.Seed, t.Name())
		if schedErr != nil {
			fmt.Fprintf(&b, "schedule error: %v\n", schedErr)
		}
		fmt.Fprintf(&b, "nemesis schedule as it ran:\n  %s\n", strings.Join(env.Executed(), "\n  "))
		b.WriteString(Report(h, results))
		fmt.Fprintf(&b, "history: %s\n", rec.Path())
		failDump()
		t.Error(b.String())
	}
	t.Logf("scenario %s took %s", sc.Name, time.Since(began).Round(100*time.Millisecond))
}

// settledPlacements waits (bounded) until every running server lists the
// same placements, and returns each server's list.
func settledPlacements(obs *Observer, c *Cluster, timeout time.Duration) map[string][]PlacementBrief {
	deadline := time.Now().Add(timeout)
	for {
		out := map[string][]PlacementBrief{}
		for _, s := range c.Servers() {
			if !c.Running(s) || c.Stopped(s) {
				continue
			}
			if snap, ok := obs.Snapshot(context.Background(), c.Node(s)); ok {
				ps := snap.Placements
				sort.Slice(ps, func(i, j int) bool { return ps[i].Actor < ps[j].Actor })
				out[s] = ps
			}
		}
		same := len(out) > 0
		var first []PlacementBrief
		n := 0
		for _, ps := range out {
			if n == 0 {
				first = ps
			} else if !reflect.DeepEqual(first, ps) {
				same = false
			}
			n++
		}
		if same && n == len(c.Servers()) || time.Now().After(deadline) {
			return out
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// keepArtifacts copies the history and the node logs of a run into out
// (KELPIE_TEST_LOG_DIR, as the rest of the integration suite does).
func keepArtifacts(dir, out, prefix string) {
	if err := os.MkdirAll(out, 0o755); err != nil {
		return
	}
	copyFile(filepath.Join(dir, "history.jsonl"), filepath.Join(out, prefix+"-history.jsonl"))
	logs, _ := filepath.Glob(filepath.Join(dir, "*", "kelpied.log"))
	for _, l := range logs {
		copyFile(l, filepath.Join(out, prefix+"-"+filepath.Base(filepath.Dir(l))+".log"))
	}
}

func copyFile(src, dst string) {
	b, err := os.ReadFile(src)
	if err == nil {
		_ = os.WriteFile(dst, b, 0o644)
	}
}
