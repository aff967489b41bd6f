package cluster

import (
	"sync/atomic"

	"context"
	"fmt"
	"github.com/kelpie/cluster/consensus"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"
)

// benchNode starts a single-server cluster with n actors placed.
func benchNode(b testing.TB, actors int) *Node {
	b.Helper()
	cfg := TestConfig()
	cfg.NodeID = "bench"
	cfg.BindAddr = allocIP()
	cfg.Server, cfg.BootstrapExpect = true, 1
	cfg.Voters.Voters = 1
	n, err := New(cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := n.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { n.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := n.Join(ctx, nil); err != nil {
		b.Fatal(err)
	}
	for n.LeaseRemaining() == 0 {
		time.Sleep(10 * time.Millisecond)
	}
	errs := make(chan error, actors)
	for i := 0; i < actors; i++ {
		go func() {
			_, err := n.Place(ctx, fmt.Sprintf("actor-%d", i), PlaceOptions{})
			errs <- err
		}()
	}
	for i := 0; i < actors; i++ {
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
	return n
}

// BenchmarkLookup is the local-read fast path: a server's replica lookup.
func BenchmarkLookup(b *testing.B) {
	n := benchNode(b, 10_000)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := n.Lookup(ctx, "actor-4242"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLookupParallel is the same from every core at once.
func BenchmarkLookupParallel(b *testing.B) {
	n := benchNode(b, 10_000)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := n.Lookup(ctx, "actor-4242"); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// blobHost is a host whose actors carry a state of a fixed size, for the
// migration benchmark.
type blobHost struct {
	mu    sync.Mutex
	state map[string][]byte
	size  int
}

func (h *blobHost) Activate(_ context.Context, actor string, _ uint64, state []byte) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if state == nil {
		state = make([]byte, h.size)
	}
	h.state[actor] = state
	return nil
}

func (h *blobHost) Deactivate(_ context.Context, actor string) ([]byte, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.state[actor]
	delete(h.state, actor)
	return s, nil
}

func (h *blobHost) Invoke(_ context.Context, actor string, _ uint64, _ []byte) ([]byte, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return []byte(strconv.Itoa(len(h.state[actor]))), nil
}

// BenchmarkMigration measures one migration's latency (reported as p50/p99)
// for 1 KiB and 1 MiB of state between two nodes of a 3-server cluster on
// loopback, one migration at a time; migrations/s is 1/latency.
func BenchmarkMigration(b *testing.B) {
	for _, size := range []int{1 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("state=%dKiB", size>>10), func(b *testing.B) {
			leader := benchCluster(b, "m", func(*Config) Host { return &blobHost{state: map[string][]byte{}, size: size} }, nil)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			b.SetBytes(int64(size))
			b.ResetTimer()
			lat, total := migrateLoop(b, ctx, leader, "m2", "m3", b.N, 0)
			b.StopTimer()
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
			b.ReportMetric(float64(len(lat))/total.Seconds(), "migrations/s")
		})
	}
}

// migrateLoop places actor "blob" on node a and migrates it back and forth
// between a and b, one migration at a time: count migrations, or (count 0)
// as many as fit in window. It returns each migration's latency and the
// time they took together.
func migrateLoop(tb testing.TB, ctx context.Context, leader *Node, a, b string, count int, window time.Duration) ([]time.Duration, time.Duration) {
	tb.Helper()
	if _, err := leader.Place(ctx, "blob", PlaceOptions{Prefer: a}); err != nil {
		tb.Fatal(err)
	}
	if _, err := leader.Invoke(ctx, "blob", []byte(`{}`)); err != nil {
		tb.Fatal(err)
	}
	var lat []time.Duration
	begin := time.Now()
	for i := 0; count == 0 && time.Since(begin) < window || i < count; i++ {
		to := b
		if i%2 == 1 {
			to = a
		}
		start := time.Now()
		out, err := leader.Migrate(ctx, "blob", to)
		if err != nil || out.State != "committed" {
			tb.Fatalf("migration %d: %+v %v", i, out, err)
		}
		lat = append(lat, time.Since(start))
	}
	return lat, time.Since(begin)
}

// BenchmarkPlaceThroughput: library Place calls on the leader of 3 voters
// with real TCP transport and raft-wal stores (fsync on), at several
// numbers of requests in flight. Compare with consensus'
// BenchmarkRaftBaseline in the same run (disk speed varies between runs).
func BenchmarkPlaceThroughput(b *testing.B) {
	for _, inflight := range []int{1, 16, 64, 256, 4096} {
		b.Run(fmt.Sprintf("inflight=%d", inflight), func(b *testing.B) {
			leader := benchCluster(b, "p", func(*Config) Host { return nil }, func(cfg *Config) {
				cfg.Raft = consensus.DefaultConfig()
				cfg.DataDir = b.TempDir()
				cfg.QuorumTimeout = 30 * time.Second
			})
			lat := make([]time.Duration, b.N)
			var next atomic.Int64
			b.ResetTimer()
			start := time.Now()
			var cw sync.WaitGroup
			for c := 0; c < inflight; c++ {
				cw.Add(1)
				go func() {
					defer cw.Done()
					for {
						i := next.Add(1) - 1
						if i >= int64(b.N) {
							return
						}
						t0 := time.Now()
						if _, err := leader.Place(context.Background(), fmt.Sprintf("a%d-%d", inflight, i), PlaceOptions{}); err != nil {
							b.Error(err)
							return
						}
						lat[i] = time.Since(t0)
					}
				}()
			}
			cw.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "placements/s")
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		})
	}
}

// benchCluster starts three bootstrap-expect servers (prefix1..3) on their
// own loopback IPs, waits until they are joined and hold leases, and returns
// the leader. mutate adjusts each config; host makes each node's host.
func benchCluster(b testing.TB, prefix string, host func(*Config) Host, mutate func(*Config)) *Node {
	b.Helper()
	var nodes []*Node
	var seed string
	for i := 1; i <= 3; i++ {
		cfg := TestConfig()
		cfg.NodeID, cfg.BindAddr = fmt.Sprintf("%s%d", prefix, i), allocIP()
		cfg.HTTPPort, cfg.GossipPort, cfg.RaftPort = DefaultHTTPPort, DefaultGossipPort, DefaultRaftPort
		cfg.Server, cfg.BootstrapExpect = true, 3
		if mutate != nil {
			mutate(&cfg)
		}
		n, err := New(cfg, host(&cfg))
		if err != nil {
			b.Fatal(err)
		}
		if err := n.Start(context.Background()); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { n.Close() })
		if i == 1 {
			seed = n.GossipAddr()
		}
		nodes = append(nodes, n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var seeds []string
			if i > 0 {
				seeds = []string{seed}
			}
			if err := n.Join(ctx, seeds); err != nil {
				b.Error(err)
			}
		}()
	}
	wg.Wait()
	var leader *Node
	for leader == nil && ctx.Err() == nil {
		for _, n := range nodes {
			if n.raft.IsLeader() && n.LeaseRemaining() > 0 {
				leader = n
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, n := range nodes {
		for n.LeaseRemaining() == 0 && ctx.Err() == nil {
			time.Sleep(10 * time.Millisecond)
		}
	}
	if leader == nil {
		b.Fatal("no leader with a lease within 60s")
	}
	return leader
}
