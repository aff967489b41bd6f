package gossip

import (
	"context"
	"errors"
	"net"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/kelpie/cluster/internal/netx"
)

func TestThreeNodesJoinWithTags(t *testing.T) {
	tags := map[string]Tags{
		"n1": {Role: RoleServer, HTTPAddr: "127.0.0.1:8001", RaftAddr: "127.0.0.1:9001", Zone: "z1", Version: "v1"},
		"n2": {Role: RoleServer, HTTPAddr: "127.0.0.1:8002", RaftAddr: "127.0.0.1:9002", Zone: "z2", Version: "v1"},
		"n3": {Role: RoleClient, HTTPAddr: "127.0.0.1:8003", Zone: "z1", Version: "v2"},
	}
	var nodes []*node
	for _, name := range []string{"n1", "n2", "n3"} {
		nodes = append(nodes, startNode(t, name, true, withTags(tags[name])))
	}
	for _, n := range nodes {
		lm := n.LocalMember()
		host, port, err := net.SplitHostPort(lm.Addr)
		if err != nil || host != n.ip || port == "0" {
			t.Fatalf("%s LocalMember().Addr = %q, want %s:<bound port>", n.name, lm.Addr, n.ip)
		}
	}
	joinTo(t, nodes[1], nodes[0])
	joinTo(t, nodes[2], nodes[0])
	waitAllAlive(t, nodes)

	for _, n := range nodes {
		ms := n.Members()
		if len(ms) != 3 {
			t.Fatalf("%s sees %d members, want 3: %+v", n.name, len(ms), ms)
		}
		for i, m := range ms {
			if want := "n" + strconv.Itoa(i+1); m.Name != want {
				t.Errorf("%s: Members()[%d].Name = %q, want %q (sorted)", n.name, i, m.Name, want)
			}
			if m.Tags != tags[m.Name] {
				t.Errorf("%s sees %s tags %+v, want %+v", n.name, m.Name, m.Tags, tags[m.Name])
			}
			if m.Status != StatusAlive {
				t.Errorf("%s sees %s %s", n.name, m.Name, m.Status)
			}
		}
		// AliveServers follows the member events, which may trail
		// Members() by a moment.
		var servers []string
		waitFor(t, 2*time.Second, n.name+" AliveServers [n1 n2]", func() bool {
			servers = servers[:0]
			for _, m := range n.AliveServers() {
				servers = append(servers, m.Name)
			}
			return slices.Equal(servers, []string{"n1", "n2"})
		})
		if ms[0].Addr != nodes[0].LocalMember().Addr {
			t.Errorf("%s sees n1 at %s, n1 says %s", n.name, ms[0].Addr, nodes[0].LocalMember().Addr)
		}
	}
	// Every node got a join event for each of the others.
	for _, n := range nodes {
		for _, other := range nodes {
			waitFor(t, 2*time.Second, n.name+" EventJoin "+other.name, func() bool {
				return n.rec.has(EventJoin, other.name)
			})
		}
	}

	// A tag change reaches the others as EventUpdate.
	newTags := tags["n3"]
	newTags.Role = RoleServer
	if err := nodes[2].SetTags(newTags); err != nil {
		t.Fatalf("SetTags: %v", err)
	}
	for _, n := range nodes[:2] {
		waitFor(t, 5*time.Second, n.name+" EventUpdate n3", func() bool {
			e, ok := n.rec.find(EventUpdate, "n3")
			return ok && e.Member.Tags == newTags
		})
		if got := len(n.AliveServers()); got != 3 {
			t.Errorf("%s: %d alive servers after n3 became a server, want 3", n.name, got)
		}
	}
}

func TestEventTimestampsUseInjectedClock(t *testing.T) {
	fixed := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	n := startNode(t, "clock", true, func(c *Config) { c.Now = func() time.Time { return fixed } })
	waitFor(t, 2*time.Second, "own join event", func() bool { return n.rec.has(EventJoin, "clock") })
	if e, _ := n.rec.find(EventJoin, "clock"); !e.At.Equal(fixed) {
		t.Fatalf("Event.At = %v, want injected %v", e.At, fixed)
	}
}

func TestCloseWithoutLeaveReportsFailed(t *testing.T) {
	nodes := startCluster(t, []string{"f1", "f2", "f3"}, func(c *Config) { c.Tags.Role = RoleServer })
	for _, n := range nodes {
		waitFor(t, 2*time.Second, n.name+" sees 3 alive servers", func() bool { return len(n.AliveServers()) == 3 })
	}
	victim := nodes[2]
	if err := victim.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for _, n := range nodes[:2] {
		waitFor(t, 10*time.Second, n.name+" EventFailed f3", func() bool {
			return n.rec.has(EventFailed, "f3")
		})
		if got := statusOf(n.Gossip, "f3"); got != StatusFailed {
			t.Errorf("%s: f3 is %s, want failed", n.name, got)
		}
		if n.rec.has(EventLeave, "f3") {
			t.Errorf("%s got EventLeave for a crashed node:\n%s", n.name, n.rec)
		}
		if got := len(n.Members()); got != 3 {
			t.Errorf("%s: %d members, want 3 (failed ones stay until reaped)", n.name, got)
		}
		if got := n.AliveServers(); len(got) != 2 || got[0].Name == "f3" || got[1].Name == "f3" {
			t.Errorf("%s: AliveServers after f3 failed = %v, want f1 and f2", n.name, got)
		}
	}
}

func TestLeaveReportsLeftThenReap(t *testing.T) {
	nodes := startCluster(t, []string{"l1", "l2", "l3"}, func(c *Config) {
		c.TombstoneTimeout = time.Second
		c.ReapInterval = 200 * time.Millisecond
	})
	leaver := nodes[2]
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := leaver.Leave(ctx); err != nil {
		t.Fatalf("Leave: %v", err)
	}
	if got := leaver.LocalMember().Status; got != StatusLeft {
		t.Errorf("leaver sees itself %s, want left", got)
	}
	if err := leaver.Leave(ctx); err != nil {
		t.Errorf("second Leave: %v", err)
	}
	if err := leaver.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for _, n := range nodes[:2] {
		waitFor(t, 5*time.Second, n.name+" EventLeave l3", func() bool {
			return n.rec.has(EventLeave, "l3")
		})
		// serf allows Failed then Leave ("forced" leave) when memberlist's
		// dead message overtakes serf's leave intent, so what must hold is
		// that the last word about l3 is a leave.
		if last, _ := n.rec.last("l3", EventReap); last.Type != EventLeave || last.Member.Status != StatusLeft {
			t.Errorf("%s: last event about l3 is %s, want leave (left):\n%s", n.name, last, n.rec)
		}
		if n.rec.has(EventFailed, "l3") {
			t.Logf("%s saw l3 failed before left (tolerated):\n%s", n.name, n.rec)
		}
	}
	// Reaped after TombstoneTimeout: EventReap and gone from Members.
	for _, n := range nodes[:2] {
		waitFor(t, 5*time.Second, n.name+" EventReap l3", func() bool {
			return n.rec.has(EventReap, "l3")
		})
		if _, ok := n.Member("l3"); ok {
			t.Errorf("%s still lists l3 after reap", n.name)
		}
	}
}

func TestLeaveStatusVisibleBeforeReap(t *testing.T) {
	nodes := startCluster(t, []string{"s1", "s2"})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := nodes[1].Leave(ctx); err != nil {
		t.Fatalf("Leave: %v", err)
	}
	waitFor(t, 5*time.Second, "s1 sees s2 left", func() bool {
		return statusOf(nodes[0].Gossip, "s2") == StatusLeft
	})
}

func TestFullEventsChannelDropsWithoutBlockingSerf(t *testing.T) {
	slow := startNode(t, "d1", false, func(c *Config) { c.EventBuffer = 1 })
	others := []*node{startNode(t, "d2", true), startNode(t, "d3", true)}
	for _, n := range others {
		joinTo(t, n, slow)
	}
	all := append([]*node{slow}, others...)
	// serf keeps working: membership converges although d1 reads nothing.
	waitAllAlive(t, all)
	waitFor(t, 2*time.Second, "dropped events", func() bool { return slow.DroppedEvents() > 0 })

	// The one buffered event is there; after reading it, new events flow.
	select {
	case e := <-slow.Events():
		if e.Type != EventJoin {
			t.Errorf("first buffered event = %s, want a join", e)
		}
	default:
		t.Fatal("Events() is empty although events were dropped")
	}
	dropped := slow.DroppedEvents()
	tags := Tags{Role: RoleServer, Zone: "moved"}
	if err := others[0].SetTags(tags); err != nil {
		t.Fatalf("SetTags: %v", err)
	}
	deadline := time.After(5 * time.Second)
	for {
		select {
		case e := <-slow.Events():
			if e.Type == EventUpdate && e.Member.Name == "d2" && e.Member.Tags == tags {
				if slow.DroppedEvents() != dropped {
					t.Errorf("dropped grew from %d to %d with room in the channel", dropped, slow.DroppedEvents())
				}
				return
			}
		case <-deadline:
			t.Fatal("no EventUpdate for d2 after draining the channel")
		}
	}
}

func TestPartitionIsolatesAndHeals(t *testing.T) {
	faults := netx.NewFaults()
	nodes := startCluster(t, []string{"p1", "p2", "p3"}, func(c *Config) {
		c.Filter = faults
		// Keep serf's automatic reconnect out of the way: this test
		// checks the explicit re-join path (see
		// TestPartitionHealsByReconnect for the automatic one).
		c.ReconnectInterval = time.Hour
	})
	a, b, c := nodes[0], nodes[1], nodes[2]
	faults.Isolate(c.ip, []string{a.ip, b.ip})

	for _, n := range []*node{a, b} {
		// The status changes inside serf before the event has travelled
		// through the pump: wait for both.
		waitFor(t, 10*time.Second, n.name+" sees p3 failed (status and event)", func() bool {
			return statusOf(n.Gossip, "p3") == StatusFailed && n.rec.has(EventFailed, "p3")
		})
		if statusOf(n.Gossip, "p1") != StatusAlive || statusOf(n.Gossip, "p2") != StatusAlive {
			t.Errorf("%s: majority side lost a member: %+v", n.name, n.Members())
		}
	}
	// p3's own view is not waited for: with nobody to confirm its
	// suspicions, and Lifeguard slowing its probes as its health score
	// drops, it needs 6× the minimum suspicion or more (measured 3.5-9 s
	// under -race) to declare p1 and p2 failed.

	faults.Heal()
	// Observed (once both sides had declared the other failed): with serf's
	// reconnect loop disabled the sides never re-merged on their own
	// (watched for 4×PushPullInterval, until the failed members were
	// reaped): memberlist only push/pulls with members it believes alive,
	// and gossip to dead members carries no state. An explicit Join
	// re-merges at once, whatever p3 currently believes: the push/pull tells
	// p3 it was declared dead, and p3 refutes that with a higher
	// incarnation.
	joinTo(t, c, a)
	waitAllAlive(t, nodes)
	for _, n := range []*node{a, b} {
		waitFor(t, 2*time.Second, n.name+" EventJoin p3 after its EventFailed", func() bool {
			return n.rec.sequence("p3", EventJoin, EventFailed, EventJoin)
		})
	}
}

func TestPartitionHealsByReconnect(t *testing.T) {
	faults := netx.NewFaults()
	nodes := startCluster(t, []string{"r1", "r2", "r3"}, func(c *Config) { c.Filter = faults })
	a, b, c := nodes[0], nodes[1], nodes[2]
	faults.Isolate(c.ip, []string{a.ip, b.ip})
	waitFor(t, 10*time.Second, "the majority sees r3 failed", func() bool {
		return statusOf(a.Gossip, "r3") == StatusFailed && statusOf(b.Gossip, "r3") == StatusFailed
	})
	faults.Heal()
	// No Join: serf's reconnect loop (every ReconnectInterval it re-joins a
	// random failed member, with probability failed/alive) merges the sides
	// on its own; observed within a few hundred ms with TestConfig.
	waitAllAlive(t, nodes)
	for _, n := range []*node{a, b} {
		waitFor(t, 2*time.Second, n.name+" EventJoin r3 after its EventFailed", func() bool {
			return n.rec.sequence("r3", EventJoin, EventFailed, EventJoin)
		})
	}
}

func TestNameConflictLoserStops(t *testing.T) {
	nodes := startCluster(t, []string{"c1", "c2"})
	dup := startNode(t, "c1", true) // same name, other address
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// The join may or may not report success depending on timing; what
	// matters is that the impostor loses the vote and stops.
	_, _ = dup.Join(ctx, []string{nodes[1].LocalMember().Addr})
	select {
	case <-dup.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the duplicate node's serf did not shut down")
	}
	select {
	case <-nodes[0].Done():
		t.Fatal("the original c1 shut down")
	default:
	}
	if _, err := dup.Join(ctx, []string{nodes[1].LocalMember().Addr}); !errors.Is(err, ErrClosed) {
		t.Errorf("Join after losing the conflict: %v, want ErrClosed", err)
	}
	if err := dup.Close(); err != nil {
		t.Errorf("Close after conflict shutdown: %v", err)
	}
	if statusOf(nodes[1].Gossip, "c1") != StatusAlive {
		t.Errorf("c2 sees c1 %s", statusOf(nodes[1].Gossip, "c1"))
	}
}

func TestJoinErrors(t *testing.T) {
	ctx := context.Background()
	cfg := TestConfig()
	cfg.NodeName, cfg.BindAddr = "j0", nextIP()
	cfg.Logger = testLogger(t)
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.Join(ctx, []string{"127.0.0.1:1"}); !errors.Is(err, ErrNotStarted) {
		t.Errorf("Join before Start: %v, want ErrNotStarted", err)
	}
	if err := g.Leave(ctx); !errors.Is(err, ErrNotStarted) {
		t.Errorf("Leave before Start: %v, want ErrNotStarted", err)
	}
	g.Close()

	n := startNode(t, "j1", true)
	if _, err := n.Join(ctx, nil); !errors.Is(err, ErrNoSeedReachable) {
		t.Errorf("Join(nil): %v, want ErrNoSeedReachable", err)
	}
	for _, bad := range []string{"localhost:7946", "127.0.0.1", "not an addr"} {
		if _, err := n.Join(ctx, []string{bad}); err == nil {
			t.Errorf("Join(%q) accepted", bad)
		}
	}
	// Nothing listens on port 1: connection refused at once.
	k, err := n.Join(ctx, []string{net.JoinHostPort(nextIP(), "1")})
	if k != 0 || !errors.Is(err, ErrNoSeedReachable) {
		t.Errorf("Join(unreachable) = %d, %v; want 0, ErrNoSeedReachable", k, err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := n.Join(cctx, []string{net.JoinHostPort(nextIP(), "1")}); !errors.Is(err, context.Canceled) {
		t.Errorf("Join(cancelled ctx): %v", err)
	}
}

func TestCloseIsIdempotent(t *testing.T) {
	ctx := context.Background()
	newGossip := func(name string) *Gossip {
		cfg := TestConfig()
		cfg.NodeName, cfg.BindAddr = name, nextIP()
		cfg.Logger = testLogger(t)
		g, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return g
	}

	// Never started.
	g := newGossip("i0")
	for range 2 {
		if err := g.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
	}
	if err := g.Start(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("Start after Close: %v, want ErrClosed", err)
	}
	<-g.Done()

	// Started; closed concurrently and repeatedly.
	g = newGossip("i1")
	if err := g.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := g.Start(ctx); !errors.Is(err, ErrAlreadyStarted) {
		t.Errorf("second Start: %v, want ErrAlreadyStarted", err)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if err := g.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
	wg.Wait()
	if err := g.Close(); err != nil {
		t.Errorf("Close again: %v", err)
	}
	select {
	case <-g.Done():
	default:
		t.Error("Done not closed after Close")
	}
	for range g.Events() { // closed after Done: the loop ends
	}
	if _, err := g.Join(ctx, []string{"127.0.0.1:1"}); !errors.Is(err, ErrClosed) {
		t.Errorf("Join after Close: %v, want ErrClosed", err)
	}
	if err := g.Leave(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("Leave after Close: %v, want ErrClosed", err)
	}
	if err := g.SetTags(Tags{Role: RoleClient}); !errors.Is(err, ErrClosed) {
		t.Errorf("SetTags after Close: %v, want ErrClosed", err)
	}
	if got := len(g.Members()); got != 1 {
		t.Errorf("Members after Close: %d, want the last view (1)", got)
	}
}

func TestLeaveBoundedByContext(t *testing.T) {
	nodes := startCluster(t, []string{"x1", "x2"}, func(c *Config) {
		c.LeavePropagateDelay = time.Second
	})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := nodes[1].Leave(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Leave: %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Leave returned after %v, want about the ctx deadline", d)
	}
	// Close waits for the leave in the background, which still completes.
	if err := nodes[1].Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	waitFor(t, 5*time.Second, "x1 sees x2 left", func() bool {
		return statusOf(nodes[0].Gossip, "x2") == StatusLeft
	})
}

func TestSetTagsBeforeStart(t *testing.T) {
	cfg := TestConfig()
	cfg.NodeName, cfg.BindAddr = "st", nextIP()
	cfg.Logger = testLogger(t)
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	want := Tags{Role: RoleServer, RaftAddr: "127.0.0.1:1"}
	if err := g.SetTags(want); err != nil {
		t.Fatal(err)
	}
	if err := g.SetTags(Tags{Role: "boss"}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("SetTags(bad role): %v, want ErrInvalidConfig", err)
	}
	if got := g.LocalMember(); got.Tags != want || got.Status != StatusUnknown {
		t.Errorf("LocalMember before Start = %+v", got)
	}
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := g.LocalMember(); got.Tags != want || got.Status != StatusAlive {
		t.Errorf("LocalMember after Start = %+v", got)
	}
}
