package gossip

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestMain fails the run if goroutines started by the tests outlive them.
// memberlist finishes some work (stream handlers, timers) shortly after
// Shutdown, hence the grace period.
func TestMain(m *testing.M) {
	base := runtime.NumGoroutine()
	code := m.Run()
	if code == 0 {
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > base && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if n := runtime.NumGoroutine(); n > base {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			fmt.Fprintf(os.Stderr, "goroutine leak: %d running after the tests, %d before\n%s\n", n, base, buf)
			code = 1
		}
	}
	os.Exit(code)
}

// ipSeq hands out loopback addresses 127.0.0.2..127.0.0.30, one per node,
// wrapping around (ports are 0, so reuse across tests is harmless).
var ipSeq atomic.Int32

func nextIP() string {
	n := ipSeq.Add(1) - 1
	return fmt.Sprintf("127.0.0.%d", 2+n%29)
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// testLogger collects serf/memberlist logs and prints them only if the test
// fails (or always with GOSSIP_TEST_LOG=1).
func testLogger(t *testing.T) *slog.Logger {
	opts := &slog.HandlerOptions{Level: slog.LevelDebug}
	if os.Getenv("GOSSIP_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, opts))
	}
	buf := &lockedBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs:\n%s", buf.String())
		}
	})
	return slog.New(slog.NewTextHandler(buf, opts))
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// node is a started Gossip plus a recorder of its events.
type node struct {
	*Gossip
	name string
	ip   string
	rec  *recorder // nil when events are not read
}

type nodeOpt func(*Config)

func withTags(tags Tags) nodeOpt { return func(c *Config) { c.Tags = tags } }

// startNode starts a node on a fresh 127.0.0.N; it is closed at cleanup.
// record=false leaves Events unread.
func startNode(t *testing.T, name string, record bool, opts ...nodeOpt) *node {
	t.Helper()
	cfg := TestConfig()
	cfg.NodeName = name
	cfg.BindAddr = nextIP()
	cfg.Logger = testLogger(t)
	for _, o := range opts {
		o(&cfg)
	}
	g, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%s): %v", name, err)
	}
	t.Cleanup(func() {
		if err := g.Close(); err != nil {
			t.Errorf("Close(%s): %v", name, err)
		}
	})
	if err := g.Start(context.Background()); err != nil {
		t.Fatalf("Start(%s): %v", name, err)
	}
	n := &node{Gossip: g, name: name, ip: cfg.BindAddr}
	if record {
		n.rec = newRecorder(g.Events())
	}
	return n
}

// startCluster starts len(names) nodes, joins them all through the first
// and waits until every node sees every other alive.
func startCluster(t *testing.T, names []string, opts ...nodeOpt) []*node {
	t.Helper()
	nodes := make([]*node, len(names))
	for i, name := range names {
		nodes[i] = startNode(t, name, true, opts...)
	}
	for _, n := range nodes[1:] {
		joinTo(t, n, nodes[0])
	}
	waitAllAlive(t, nodes)
	return nodes
}

func joinTo(t *testing.T, n, seed *node) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if k, err := n.Join(ctx, []string{seed.LocalMember().Addr}); err != nil || k != 1 {
		t.Fatalf("%s join %s: n=%d err=%v", n.name, seed.name, k, err)
	}
}

func waitAllAlive(t *testing.T, nodes []*node) {
	t.Helper()
	waitFor(t, 10*time.Second, "every node to see every node alive", func() bool {
		for _, a := range nodes {
			for _, b := range nodes {
				if statusOf(a.Gossip, b.name) != StatusAlive {
					return false
				}
			}
		}
		return true
	})
}

func statusOf(g *Gossip, name string) Status {
	m, ok := g.Member(name)
	if !ok {
		return StatusUnknown
	}
	return m.Status
}

// recorder drains an Events channel into a slice until it is closed.
type recorder struct {
	mu     sync.Mutex
	events []Event
	closed chan struct{}
}

func newRecorder(ch <-chan Event) *recorder {
	r := &recorder{closed: make(chan struct{})}
	go func() {
		defer close(r.closed)
		for e := range ch {
			r.mu.Lock()
			r.events = append(r.events, e)
			r.mu.Unlock()
		}
	}()
	return r
}

// find returns the first recorded event of type typ about member name.
func (r *recorder) find(typ EventType, name string) (Event, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.events {
		if e.Type == typ && e.Member.Name == name {
			return e, true
		}
	}
	return Event{}, false
}

// last returns the most recent recorded event about member name, skipping
// events of the types in skip.
func (r *recorder) last(name string, skip ...EventType) (Event, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.events) - 1; i >= 0; i-- {
		e := r.events[i]
		if e.Member.Name == name && !slices.Contains(skip, e.Type) {
			return e, true
		}
	}
	return Event{}, false
}

// sequence reports whether the events about member name contain types in
// this order (not necessarily adjacent).
func (r *recorder) sequence(name string, types ...EventType) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	i := 0
	for _, e := range r.events {
		if i < len(types) && e.Member.Name == name && e.Type == types[i] {
			i++
		}
	}
	return i == len(types)
}

func (r *recorder) has(typ EventType, name string) bool {
	_, ok := r.find(typ, name)
	return ok
}

func (r *recorder) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	for _, e := range r.events {
		fmt.Fprintf(&b, "  %s\n", e)
	}
	return b.String()
}
