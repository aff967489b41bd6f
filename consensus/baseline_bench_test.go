package consensus

import (
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// countFSM only counts operations: the engine's own limit, with nothing of
// ours in the apply path. Each entry carries ops operations.
type countFSM struct{ n atomic.Int64 }

func (f *countFSM) Apply(l *raft.Log) interface{} {
	if len(l.Data) > 0 {
		f.n.Add(int64(l.Data[0]))
	}
	return nil
}
func (f *countFSM) Snapshot() (raft.FSMSnapshot, error) { return countSnap{}, nil }
func (f *countFSM) Restore(r io.ReadCloser) error       { return r.Close() }

type countSnap struct{}

func (countSnap) Persist(s raft.SnapshotSink) error { return s.Close() }
func (countSnap) Release()                          {}

// rawCluster starts 3 plain hashicorp/raft voters on loopback TCP with the
// same stores as kelpie (raft-wal with fsync, file snapshots) and returns
// the leader.
func rawCluster(b *testing.B) *raft.Raft {
	b.Helper()
	type member struct {
		r     *raft.Raft
		st    *stores
		trans *raft.NetworkTransport
	}
	var ms []member
	var servers []raft.Server
	for i := 0; i < 3; i++ {
		cfg := DefaultConfig()
		cfg.ID, cfg.BindAddr, cfg.DataDir = fmt.Sprintf("r%d", i), "127.0.0.1:0", b.TempDir()
		st, err := openStores(withLogger(cfg))
		if err != nil {
			b.Fatal(err)
		}
		sl, err := newStreamLayer(cfg.BindAddr, "", nil, nil, nil)
		if err != nil {
			b.Fatal(err)
		}
		trans := raft.NewNetworkTransport(sl, 3, 10*time.Second, io.Discard)
		rc := raft.DefaultConfig()
		rc.LocalID = raft.ServerID(cfg.ID)
		rc.LogOutput = io.Discard
		rc.NoLegacyTelemetry = true
		r, err := raft.NewRaft(rc, &countFSM{}, st.logs, st.stable, st.snaps, trans)
		if err != nil {
			b.Fatal(err)
		}
		ms = append(ms, member{r, st, trans})
		servers = append(servers, raft.Server{ID: rc.LocalID, Address: trans.LocalAddr()})
	}
	b.Cleanup(func() {
		for _, m := range ms {
			m.r.Shutdown().Error()
			m.trans.Close()
			m.st.closer()
		}
	})
	if err := ms[0].r.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
		b.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		for _, m := range ms {
			if m.r.State() == raft.Leader {
				return m.r
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	b.Fatal("no leader")
	return nil
}

func withLogger(c Config) Config {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// BenchmarkRaftBaseline is the comparison for kelpie's placement throughput:
// (a) one 64-byte entry per operation at the given concurrency; (b) the
// engine's limit, 100 operations packed per entry, 256 callers. Reported as
// ops/s (operations, not entries).
func BenchmarkRaftBaseline(b *testing.B) {
	run := func(b *testing.B, callers, opsPerEntry int) {
		r := rawCluster(b)
		payload := make([]byte, 64)
		payload[0] = byte(opsPerEntry)
		entries := (b.N + opsPerEntry - 1) / opsPerEntry
		var next atomic.Int64
		var wg sync.WaitGroup
		b.ResetTimer()
		start := time.Now()
		for c := 0; c < callers; c++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for next.Add(1) <= int64(entries) {
					if err := r.Apply(payload, 10*time.Second).Error(); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		b.StopTimer()
		b.ReportMetric(float64(entries*opsPerEntry)/time.Since(start).Seconds(), "ops/s")
	}
	for _, c := range []int{1, 16, 64, 256, 4096} {
		b.Run(fmt.Sprintf("a-entry-per-op/inflight=%d", c), func(b *testing.B) { run(b, c, 1) })
	}
	b.Run("b-100-ops-per-entry/inflight=256", func(b *testing.B) { run(b, 256, 100) })
}
