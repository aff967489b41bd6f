package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kelpie/cluster/consensus"
	"github.com/kelpie/cluster/internal/demohost"
	"github.com/kelpie/cluster/internal/netx"
)

// nextIP hands every test node its own loopback address, so default ports
// never collide and the fault filter can tell nodes apart.
var nextIP atomic.Uint32

// ipBase gives each test process its own 127.B.0.0/16 so that test and
// benchmark processes running at once never share an address. A helper
// process started by a test is given its base in KELPIE_TEST_IP_BASE.
var ipBase = func() int {
	if b, err := strconv.Atoi(os.Getenv(envTestIPBase)); err == nil && b >= 10 && b < 210 {
		return b
	}
	return 10 + os.Getpid()%200
}()

const envTestIPBase = "KELPIE_TEST_IP_BASE"

func allocIP() string {
	n := nextIP.Add(1)
	return fmt.Sprintf("127.%d.%d.%d", ipBase, n/250, n%250+2)
}

// testCluster is an in-process cluster of real nodes (real serf and Raft on
// loopback) sharing one fault filter.
type testCluster struct {
	t      *testing.T
	faults *netx.Faults

	mu     sync.Mutex
	nodes  map[string]*Node
	ips    map[string]string
	dirs   map[string]string
	epochs map[string]uint64           // highest epoch each node ID ever served
	hosts  map[string][]*demohost.Host // every demo host each node ID ran (one per start)
}

func newTestCluster(t *testing.T) *testCluster {
	tc := &testCluster{t: t, faults: netx.NewFaults(), nodes: map[string]*Node{}, ips: map[string]string{},
		dirs: map[string]string{}, epochs: map[string]uint64{}, hosts: map[string][]*demohost.Host{}}
	t.Cleanup(func() {
		tc.mu.Lock()
		nodes := make([]*Node, 0, len(tc.nodes))
		for _, n := range tc.nodes {
			nodes = append(nodes, n)
		}
		tc.mu.Unlock()
		var wg sync.WaitGroup
		for _, n := range nodes {
			wg.Add(1)
			go func() { defer wg.Done(); n.Close() }()
		}
		wg.Wait()
	})
	return tc
}

type nodeOpts struct {
	server  bool
	expect  int
	voters  int
	durable bool // keep Raft state on disk (for restarts)
	mutate  func(*Config)
}

// start creates and starts node id (reusing its IP and data dir if it ran
// before) and watches the epochs it serves for regressions.
func (tc *testCluster) start(id string, o nodeOpts) *Node {
	tc.t.Helper()
	tc.mu.Lock()
	ip, ok := tc.ips[id]
	if !ok {
		ip = allocIP()
		tc.ips[id] = ip
	}
	dir := tc.dirs[id]
	if o.durable && dir == "" {
		dir = tc.t.TempDir()
		tc.dirs[id] = dir
	}
	tc.mu.Unlock()

	cfg := TestConfig()
	cfg.NodeID = id
	cfg.BindAddr = ip
	cfg.HTTPPort, cfg.GossipPort, cfg.RaftPort = DefaultHTTPPort, DefaultGossipPort, DefaultRaftPort
	cfg.Server = o.server
	cfg.BootstrapExpect = o.expect
	cfg.DataDir = dir
	cfg.Filter = tc.faults
	if o.voters > 0 {
		cfg.Voters.Voters = o.voters
	}
	if testing.Verbose() || os.Getenv("KELPIE_TEST_LOG") != "" {
		level := slog.LevelInfo
		if os.Getenv("KELPIE_TEST_LOG") == "debug" {
			level = slog.LevelDebug
		}
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	}
	if o.mutate != nil {
		o.mutate(&cfg)
	}
	host, err := demohost.New(id, "")
	if err != nil {
		tc.t.Fatal(err)
	}
	n, err := New(cfg, host)
	if err != nil {
		tc.t.Fatalf("new %s: %v", id, err)
	}
	if err := n.Start(context.Background()); err != nil {
		tc.t.Fatalf("start %s: %v", id, err)
	}
	tc.mu.Lock()
	tc.nodes[id] = n
	tc.hosts[id] = append(tc.hosts[id], host)
	tc.mu.Unlock()
	go tc.watchEpochs(id, n)
	return n
}

// watchEpochs fails the test if a node ID ever serves an epoch lower than
// one it (or an earlier incarnation on the same data dir) served before.
func (tc *testCluster) watchEpochs(id string, n *Node) {
	for {
		select {
		case ev := <-n.Events():
			tc.mu.Lock()
			prev := tc.epochs[id]
			if ev.View.Epoch < prev && tc.dirs[id] != "" {
				tc.t.Errorf("MonotonicEpoch: node %s served epoch %d after %d", id, ev.View.Epoch, prev)
			}
			if ev.View.Epoch > prev {
				tc.epochs[id] = ev.View.Epoch
			}
			tc.mu.Unlock()
		case <-n.ctx.Done():
			return
		}
	}
}

func (tc *testCluster) node(id string) *Node {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	return tc.nodes[id]
}

func (tc *testCluster) ip(id string) string {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	return tc.ips[id]
}

// stop closes node id without leaving (a crash, as far as peers can tell).
func (tc *testCluster) stop(id string) {
	tc.t.Helper()
	n := tc.node(id)
	if err := n.Close(); err != nil {
		tc.t.Logf("close %s: %v", id, err)
	}
	tc.mu.Lock()
	delete(tc.nodes, id)
	tc.mu.Unlock()
}

func (tc *testCluster) live() []*Node {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	out := make([]*Node, 0, len(tc.nodes))
	for _, n := range tc.nodes {
		out = append(out, n)
	}
	return out
}

func (tc *testCluster) seed(id string) []string {
	return []string{tc.node(id).GossipAddr()}
}

func (tc *testCluster) join(n *Node, seeds []string, timeout time.Duration) {
	tc.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := n.Join(ctx, seeds); err != nil {
		tc.t.Fatalf("join %s: %v", n.ID(), err)
	}
}

// leader returns the node that leads, if any live node does.
func (tc *testCluster) leader() *Node {
	for _, n := range tc.live() {
		if n.raft != nil && n.raft.IsLeader() {
			return n
		}
	}
	return nil
}

// waitLeader waits until some live node leads and returns it.
func (tc *testCluster) waitLeader() *Node {
	tc.t.Helper()
	var l *Node
	waitFor(tc.t, 10*time.Second, "a leader", func() bool { l = tc.leader(); return l != nil })
	return l
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// converged reports whether every node in ns serves the same epoch and, for
// each id in want, that status.
func converged(ns []*Node, want map[string]consensus.Status) bool {
	if len(ns) == 0 {
		return false
	}
	v0 := ns[0].View()
	for _, n := range ns {
		v := n.View()
		if v.Epoch != v0.Epoch || v.Epoch == 0 {
			return false
		}
		for id, s := range want {
			m, ok := v.Member(id)
			if !ok || m.Status != s {
				return false
			}
		}
	}
	return true
}

func statuses(ids []string, s consensus.Status) map[string]consensus.Status {
	m := map[string]consensus.Status{}
	for _, id := range ids {
		m[id] = s
	}
	return m
}

// startServers starts n bootstrap-expect servers s1..sn and waits until all
// are Active in one committed view.
func (tc *testCluster) startServers(count int, o nodeOpts) []*Node {
	tc.t.Helper()
	o.server, o.expect = true, count
	var ns []*Node
	var ids []string
	for i := 1; i <= count; i++ {
		id := fmt.Sprintf("s%d", i)
		ids = append(ids, id)
		ns = append(ns, tc.start(id, o))
	}
	var wg sync.WaitGroup
	for i, n := range ns {
		var seeds []string
		if i > 0 {
			seeds = []string{ns[0].GossipAddr()}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := n.Join(ctx, seeds); err != nil {
				tc.t.Errorf("join %s: %v", n.ID(), err)
			}
		}()
	}
	wg.Wait()
	if tc.t.Failed() {
		tc.t.FailNow()
	}
	waitFor(tc.t, 20*time.Second, "servers converge", func() bool {
		return converged(ns, statuses(ids, consensus.StatusActive))
	})
	return ns
}

// activationEvents gathers the activation logs of every demo host that ever
// ran in the cluster.
func (tc *testCluster) activationEvents() []demohost.Event {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	var out []demohost.Event
	for _, hs := range tc.hosts {
		for _, h := range hs {
			out = append(out, h.Events()...)
		}
	}
	return out
}

// checkSingleActivation fails the test if any actor's activation intervals
// overlap across nodes (G4), on the real CLOCK_MONOTONIC timestamps.
func (tc *testCluster) checkSingleActivation() {
	tc.t.Helper()
	ivs := demohost.Intervals(tc.activationEvents())
	for _, o := range demohost.Overlaps(ivs, demohost.Mono()) {
		tc.t.Errorf("SingleActivation violated: %s active on %s (token %d, %d..%d) and %s (token %d, %d..%d)",
			o[0].Actor, o[0].Node, o[0].Token, o[0].Start, o[0].End, o[1].Node, o[1].Token, o[1].Start, o[1].End)
	}
}
