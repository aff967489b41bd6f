// Package integration runs real kelpied processes, each on its own loopback
// IP (127.0.0.N) with the default ports, and checks what a user would see
// through the HTTP API and kelpiectl. Each test uses its own IP range so the
// tests can run in parallel:
//
//	TestProcessBootstrapJoinFail  127.0.0.150-153
//	TestProcessFullRestart        127.0.0.160-162
//	TestProcessFullRestartGraceful 127.0.0.163-165
//	TestKelpiectlSmoke            127.0.0.170-171
//	TestKelpiectlVerbs            127.0.0.180-189
//
// Tests that cut links with nftables (TestNemesis_*,
// TestKelpiectlPartitionedLeader) run in a private network namespace of
// their own (nemesis.PrivateNetns) on 127.0.0.11-14.
package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	cluster "github.com/kelpie/cluster"
	"github.com/kelpie/cluster/consensus"
	"github.com/kelpie/cluster/integration/nemesis"
)

// Timeouts. The default gossip profile declares a dead member failed in a
// few seconds (1s probes, 4s+ suspicion); a Raft election takes 1-2s.
const (
	formTimeout    = 90 * time.Second // processes start, gossip, bootstrap, elect, commit
	failTimeout    = 30 * time.Second // kill -9 → Failed committed everywhere
	recoverTimeout = 90 * time.Second // full restart → everyone Active again
)

// startServers starts servers with --server --bootstrap-expect len(names),
// each joining all the others.
func startServers(h *harness, names, ips []string) {
	for i, name := range names {
		var join []string
		for j, ip := range ips {
			if j != i {
				join = append(join, gossipAddr(ip))
			}
		}
		h.start(nodeOpts{Name: name, IP: ips[i], Server: true, BootstrapExpect: len(names), Join: join})
	}
}

// waitSameView waits until every named node serves a view that satisfies ok,
// all with the same epoch, and returns that epoch.
func waitSameView(t *testing.T, h *harness, names []string, timeout time.Duration, desc string, ok func(consensus.View) bool) uint64 {
	t.Helper()
	var epoch uint64
	waitFor(t, timeout, desc, func() (bool, string) {
		var details []string
		epochs := map[uint64]bool{}
		good := true
		for _, n := range names {
			v, err := viewOf(h.client(n))
			if err != nil {
				details = append(details, fmt.Sprintf("%s: %v", n, err))
				good = false
				continue
			}
			details = append(details, n+": "+nemesis.DescribeView(v))
			if !ok(v) {
				good = false
			}
			epochs[v.Epoch] = true
			epoch = v.Epoch
		}
		if len(epochs) != 1 {
			good = false
		}
		return good, strings.Join(details, "; ")
	})
	return epoch
}

// allHaveStatus reports whether every id is in v with status s.
func allHaveStatus(v consensus.View, s consensus.Status, ids ...string) bool {
	for _, id := range ids {
		if m, ok := v.Member(id); !ok || m.Status != s {
			return false
		}
	}
	return true
}

func TestProcessBootstrapJoinFail(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	servers := []string{"s1", "s2", "s3"}
	ips := []string{"127.0.0.150", "127.0.0.151", "127.0.0.152"}
	startServers(h, servers, ips)
	var seeds []string
	for _, ip := range ips {
		seeds = append(seeds, gossipAddr(ip))
	}
	h.start(nodeOpts{Name: "c1", IP: "127.0.0.153", Join: seeds})
	all := append(append([]string{}, servers...), "c1")

	formed := time.Now()
	epoch := waitSameView(t, h, all, formTimeout, "all 4 members Active on every node with the same epoch",
		func(v consensus.View) bool {
			return allHaveStatus(v, consensus.StatusActive, all...) && v.Count(consensus.StatusActive) == len(all)
		})
	t.Logf("cluster formed in %s at epoch %d", time.Since(formed).Round(time.Millisecond), epoch)

	// Exactly one node ran the bootstrap (the lowest ID, s1) and exactly one
	// leads. Statuses are read one node at a time, so allow a short settle.
	waitFor(t, 15*time.Second, "exactly one bootstrapped node and exactly one leader", func() (bool, string) {
		var boot, leaders []string
		leaderIDs := map[string]bool{}
		for _, n := range all {
			s, err := statusOf(h.client(n))
			if err != nil {
				return false, fmt.Sprintf("%s: %v", n, err)
			}
			if s.SelfStatus != consensus.StatusActive || !s.Ready {
				return false, fmt.Sprintf("%s: self_status=%s ready=%v", n, s.SelfStatus, s.Ready)
			}
			if s.Bootstrapped {
				boot = append(boot, n)
			}
			if s.IsLeader {
				leaders = append(leaders, n)
			}
			leaderIDs[s.Leader.ID] = true
		}
		detail := fmt.Sprintf("bootstrapped=%v is_leader=%v leader ids=%v", boot, leaders, leaderIDs)
		return len(boot) == 1 && len(leaders) == 1 && len(leaderIDs) == 1 && leaderIDs[leaders[0]], detail
	})
	s1, err := statusOf(h.client("s1"))
	if err != nil {
		t.Fatal(err)
	}
	if !s1.Bootstrapped {
		t.Errorf("s1 (lowest ID) should be the node that bootstrapped Raft")
	}
	c1, err := statusOf(h.client("c1"))
	if err != nil {
		t.Fatal(err)
	}
	if c1.Role != consensus.RoleClient || c1.IsLeader || c1.Bootstrapped {
		t.Errorf("c1 status: role=%s is_leader=%v bootstrapped=%v, want a client", c1.Role, c1.IsLeader, c1.Bootstrapped)
	}

	// kill -9 the client: every live server commits it Failed, one epoch
	// later or more, and they agree on the epoch.
	h.kill9("c1")
	killed := time.Now()
	failedEpoch := waitSameView(t, h, servers, failTimeout, "c1 Failed with a higher epoch on every live server",
		func(v consensus.View) bool {
			return v.Epoch > epoch && allHaveStatus(v, consensus.StatusFailed, "c1") &&
				allHaveStatus(v, consensus.StatusActive, servers...)
		})
	t.Logf("c1 committed Failed %s after kill -9 (epoch %d → %d)", time.Since(killed).Round(time.Millisecond), epoch, failedEpoch)
}

// TestProcessFullRestart crashes every server (kill -9) and restarts them
// all with the same data dirs.
func TestProcessFullRestart(t *testing.T) {
	t.Parallel()
	testFullRestart(t, []string{"127.0.0.160", "127.0.0.161", "127.0.0.162"}, func(h *harness, servers []string) {
		for _, n := range servers {
			h.kill9(n)
		}
	})
}

// TestProcessFullRestartGraceful stops every server at once with SIGTERM
// (each leaves gracefully, as "stop the whole cluster" does) and restarts
// them all with the same data dirs.
func TestProcessFullRestartGraceful(t *testing.T) {
	t.Parallel()
	testFullRestart(t, []string{"127.0.0.163", "127.0.0.164", "127.0.0.165"}, func(h *harness, servers []string) {
		var wg sync.WaitGroup
		for _, n := range servers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				h.term(n, stopGrace)
			}()
		}
		wg.Wait()
		for _, n := range servers {
			if st := h.exitStatus(n); st == nil || st.ExitCode() != 0 {
				t.Errorf("%s after SIGTERM: %v, want exit 0", n, st)
			}
		}
	})
}

// testFullRestart: 3 servers form a cluster at epoch E; stop stops all of
// them; they restart with the same data dirs. All three must be Active again
// with an epoch >= E, and after the restart no node may serve a view with an
// epoch below E or below the highest epoch it served before it stopped
// (G3 MonotonicEpoch across restarts; a 503 not_ready answer is fine).
func testFullRestart(t *testing.T, ips []string, stop func(*harness, []string)) {
	h := newHarness(t)
	servers := []string{"s1", "s2", "s3"}
	startServers(h, servers, ips)
	before := waitSameView(t, h, servers, formTimeout, "all 3 servers Active with the same epoch",
		func(v consensus.View) bool { return allHaveStatus(v, consensus.StatusActive, servers...) })

	mon := newEpochMonitor(h, servers)
	defer mon.stop()
	waitFor(t, 10*time.Second, "the epoch monitor to see every node's view", func() (bool, string) {
		return mon.sawBefore(before)
	})
	stopped := time.Now()
	stop(h, servers)
	t.Logf("all servers stopped in %s", time.Since(stopped).Round(time.Millisecond))
	mon.markRestart()
	for _, n := range servers {
		h.restart(n)
	}

	restarted := time.Now()
	after := waitSameView(t, h, servers, recoverTimeout, "all 3 servers Active again with epoch >= the epoch before the restart",
		func(v consensus.View) bool {
			return v.Epoch >= before && allHaveStatus(v, consensus.StatusActive, servers...)
		})
	// Active as the new incarnation (not the record of the stopped process).
	waitFor(t, recoverTimeout, "every server ready and Active as its new incarnation", func() (bool, string) {
		for _, n := range servers {
			s, err := statusOf(h.client(n))
			if err != nil {
				return false, fmt.Sprintf("%s: %v", n, err)
			}
			if !s.Ready || s.SelfStatus != consensus.StatusActive {
				return false, fmt.Sprintf("%s: ready=%v self_status=%s epoch=%d", n, s.Ready, s.SelfStatus, s.Epoch)
			}
		}
		return true, ""
	})
	t.Logf("recovered in %s: epoch %d before, %d after", time.Since(restarted).Round(time.Millisecond), before, after)
	mon.stop()
	mon.check(t, before)
}

// epochMonitor polls /v1/view on every node (every 50ms) from before a full
// stop until after the restart, remembering per node the highest epoch
// served before the restart and every view served after it.
type epochMonitor struct {
	// gate is read-held for each request; markRestart takes it so that no
	// request straddles the switch to the restarted phase.
	gate sync.RWMutex
	mu   sync.Mutex
	// restarted is written under gate (exclusive) and read under gate (shared).
	restarted bool
	nodes     map[string]*epochSamples
	done      chan struct{}
	wg        sync.WaitGroup
	once      sync.Once
}

type epochSamples struct {
	maxBefore           uint64
	ok, notReady, other int // answers after the restart
	after               []consensus.View
}

func newEpochMonitor(h *harness, names []string) *epochMonitor {
	m := &epochMonitor{nodes: map[string]*epochSamples{}, done: make(chan struct{})}
	for _, n := range names {
		m.nodes[n] = &epochSamples{}
		c := h.client(n)
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			for {
				m.gate.RLock()
				restarted := m.restarted
				v, err := viewOf(c)
				m.gate.RUnlock()
				m.mu.Lock()
				s := m.nodes[n]
				switch {
				case !restarted:
					if err == nil && v.Epoch > s.maxBefore {
						s.maxBefore = v.Epoch
					}
				case err == nil:
					s.ok++
					s.after = append(s.after, v)
				case isNotReady(err):
					s.notReady++
				default:
					s.other++ // not listening yet, or another answer
				}
				m.mu.Unlock()
				select {
				case <-m.done:
					return
				case <-time.After(50 * time.Millisecond):
				}
			}
		}()
	}
	return m
}

// sawBefore reports whether every node has served at least epoch to the
// monitor (so the per-node floor is known before the stop).
func (m *epochMonitor) sawBefore(epoch uint64) (bool, string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for n, s := range m.nodes {
		if s.maxBefore < epoch {
			return false, fmt.Sprintf("%s: highest epoch seen %d", n, s.maxBefore)
		}
	}
	return true, ""
}

// markRestart is called once every node has stopped, before any restarts.
func (m *epochMonitor) markRestart() {
	m.gate.Lock()
	m.restarted = true
	m.gate.Unlock()
}

func (m *epochMonitor) stop() {
	m.once.Do(func() {
		close(m.done)
		m.wg.Wait()
	})
}

// check fails the test for any view served after the restart with an epoch
// below floor or below what the same node served before it stopped.
func (m *epochMonitor) check(t *testing.T, floor uint64) {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	for n, s := range m.nodes {
		min := max(floor, s.maxBefore)
		t.Logf("%s: highest epoch before the stop %d; after the restart %d views, %d not_ready, %d other errors",
			n, s.maxBefore, s.ok, s.notReady, s.other)
		var bad []string
		for _, v := range s.after {
			if v.Epoch < min {
				bad = append(bad, nemesis.DescribeView(v))
			}
		}
		if len(bad) > 0 {
			t.Errorf("%s served %d views with an epoch below %d after the restart (G3): first %s", n, len(bad), min, bad[0])
		}
		if s.ok == 0 {
			t.Errorf("%s never answered /v1/view after the restart; the monotonicity check saw nothing", n)
		}
	}
}

// runCtl runs kelpiectl and returns stdout, stderr and the exit code.
func runCtl(t *testing.T, env []string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, kelpiectlBin, args...)
	cmd.Env = append(cleanEnv(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("kelpiectl %v: %v", args, err)
		}
		code = ee.ExitCode()
	}
	t.Logf("kelpiectl %s → exit %d", strings.Join(args, " "), code)
	return stdout.String(), stderr.String(), code
}

func TestKelpiectlSmoke(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	const ip = "127.0.0.170"
	addr := httpURL(ip)
	h.start(nodeOpts{Name: "dev1", IP: ip, Dev: true})
	waitFor(t, formTimeout, "dev node ready", func() (bool, string) {
		ctx, cancel := reqCtx()
		defer cancel()
		err := h.client("dev1").Ready(ctx)
		return err == nil, fmt.Sprint(err)
	})

	t.Run("members json", func(t *testing.T) {
		out, errOut, code := runCtl(t, nil, "--addr", addr, "members", "--format", "json")
		if code != 0 {
			t.Fatalf("exit %d, stderr: %s", code, errOut)
		}
		var m cluster.Members
		if err := json.Unmarshal([]byte(out), &m); err != nil {
			t.Fatalf("decode %q: %v", out, err)
		}
		if m.Epoch == 0 || len(m.Members) != 1 {
			t.Fatalf("members = %+v, want one member at a non-zero epoch", m)
		}
		r := m.Members[0]
		if r.ID != "dev1" || r.CommittedStatus != consensus.StatusActive || r.Role != consensus.RoleServer ||
			r.Raft != "voter" || r.GossipStatus != "alive" || r.HTTPAddr != ip+":7500" {
			t.Errorf("member row = %+v", r)
		}
	})

	t.Run("status", func(t *testing.T) {
		out, errOut, code := runCtl(t, nil, "--addr", addr, "status")
		if code != 0 {
			t.Fatalf("exit %d, stderr: %s", code, errOut)
		}
		for _, want := range []string{"dev1", "Ready", "yes", "Leader"} {
			if !strings.Contains(out, want) {
				t.Errorf("status table lacks %q:\n%s", want, out)
			}
		}
		// Global flags also work after the verb, and --addr from the environment.
		out, errOut, code = runCtl(t, []string{"KELPIE_HTTP_ADDR=" + ip + ":7500"}, "status", "--format", "json")
		if code != 0 {
			t.Fatalf("exit %d, stderr: %s", code, errOut)
		}
		var s cluster.Status
		if err := json.Unmarshal([]byte(out), &s); err != nil {
			t.Fatalf("decode %q: %v", out, err)
		}
		if s.NodeID != "dev1" || !s.Ready || !s.IsLeader || !s.Bootstrapped || s.SelfStatus != consensus.StatusActive ||
			s.Version != "integration" || len(s.Voters) != 1 {
			t.Errorf("status = %+v", s)
		}
	})

	t.Run("leader voters view", func(t *testing.T) {
		out, errOut, code := runCtl(t, nil, "--addr", addr, "--format", "json", "leader")
		if code != 0 {
			t.Fatalf("leader: exit %d, stderr: %s", code, errOut)
		}
		var l cluster.LeaderInfo
		if err := json.Unmarshal([]byte(out), &l); err != nil || !l.Known || l.ID != "dev1" {
			t.Errorf("leader = %+v (%v)", l, err)
		}
		out, errOut, code = runCtl(t, nil, "--addr", addr, "voters")
		if code != 0 || !strings.Contains(out, "dev1") {
			t.Errorf("voters: exit %d, stdout %q, stderr %q", code, out, errOut)
		}
		out, errOut, code = runCtl(t, nil, "--addr", addr, "view", "--format", "json")
		if code != 0 {
			t.Fatalf("view: exit %d, stderr: %s", code, errOut)
		}
		var v consensus.View
		if err := json.Unmarshal([]byte(out), &v); err != nil || !allHaveStatus(v, consensus.StatusActive, "dev1") {
			t.Errorf("view = %s (%v)", out, err)
		}
		out, _, code = runCtl(t, nil, "--addr", addr, "version")
		if code != 0 || !strings.Contains(out, "integration") {
			t.Errorf("version: exit %d, stdout %q", code, out)
		}
	})

	t.Run("view watch", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*formTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, kelpiectlBin, "--addr", addr, "view", "--watch", "--format", "json")
		cmd.Env = cleanEnv()
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
		views := make(chan consensus.View)
		go func() {
			defer close(views)
			sc := bufio.NewScanner(stdout)
			sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
			for sc.Scan() {
				var v consensus.View
				if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
					t.Errorf("watch line %q: %v", sc.Text(), err)
					return
				}
				views <- v
			}
		}()
		next := func(desc string) consensus.View {
			t.Helper()
			select {
			case v, ok := <-views:
				if !ok {
					t.Fatalf("watch ended waiting for %s; stderr: %s", desc, stderr.String())
				}
				return v
			case <-ctx.Done():
				t.Fatalf("no watch output for %s; stderr: %s", desc, stderr.String())
			}
			return consensus.View{}
		}
		first := next("the current view")
		if !allHaveStatus(first, consensus.StatusActive, "dev1") {
			t.Fatalf("first watched view: %s", nemesis.DescribeView(first))
		}
		// A client joining produces new views (Joining, then Active), each
		// printed as its own line with a growing index.
		h.start(nodeOpts{Name: "c1", IP: "127.0.0.171", Join: []string{gossipAddr(ip)}})
		last := first
		for !allHaveStatus(last, consensus.StatusActive, "c1") {
			v := next("c1 Active")
			if v.Index <= last.Index || v.Epoch < last.Epoch {
				t.Fatalf("watch went backwards or repeated: %s after %s", nemesis.DescribeView(v), nemesis.DescribeView(last))
			}
			last = v
		}
		if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		for range views {
		}
		if err := cmd.Wait(); err != nil {
			t.Errorf("view --watch after Ctrl-C: %v (want exit 0); stderr: %s", err, stderr.String())
		}
	})

	t.Run("exit codes", func(t *testing.T) {
		_, errOut, code := runCtl(t, nil, "--addr", "http://127.0.0.1:1", "status")
		if code != 1 || !strings.Contains(errOut, "cannot reach") {
			t.Errorf("unreachable node: exit %d, stderr %q; want 1 and a message", code, errOut)
		}
		_, errOut, code = runCtl(t, nil, "--bogus")
		if code != 2 || !strings.Contains(errOut, "bogus") {
			t.Errorf("--bogus: exit %d, stderr %q; want 2 and a message", code, errOut)
		}
		_, _, code = runCtl(t, nil, "frobnicate")
		if code != 2 {
			t.Errorf("unknown command: exit %d, want 2", code)
		}
		_, _, code = runCtl(t, nil, "--addr", addr, "members", "--status", "sleepy")
		if code != 2 {
			t.Errorf("bad --status: exit %d, want 2", code)
		}
		cmd := exec.Command(kelpiedBin, "--voters", "2")
		cmd.Env = cleanEnv()
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 {
			t.Errorf("kelpied --voters 2: %v, output %q; want exit 2", err, out)
		}
	})

	// SIGTERM: the dev node leaves, exits 0 and removes its temporary data dir.
	h.term("dev1", stopGrace)
	if st := h.exitStatus("dev1"); st == nil || st.ExitCode() != 0 {
		t.Errorf("dev1 after SIGTERM: %v, want exit 0", st)
	}
	if left, _ := os.ReadDir(h.base); len(left) > 0 {
		for _, e := range left {
			if strings.HasPrefix(e.Name(), "kelpied-dev-") {
				t.Errorf("dev data dir %s left behind after a graceful stop", e.Name())
			}
		}
	}
}
