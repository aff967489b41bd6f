package consensus

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/kelpie/cluster/internal/logx"
)

// Baseline is a plain hashicorp/raft cluster built from the same parts as a
// Server (raft-wal log with fsync on every append and the CRC wrapper, file
// snapshots, the TCP transport with its pool, DefaultConfig timings) whose
// state machine only counts operations. It is the engine's own limit, which
// the benchmarks measure in the same run as kelpie's placement throughput
// (disk speed varies between runs, so only same-run ratios mean anything).
// It lives here because only this package may import hashicorp/raft. It is
// not part of a node and nothing in production starts one.
type Baseline struct {
	members []baselineMember
	leader  *raft.Raft
}

type baselineMember struct {
	r     *raft.Raft
	st    *stores
	trans *raft.NetworkTransport
	fsm   *countFSM
}

// countFSM counts operations: byte 0 of each command entry says how many
// the entry carries.
type countFSM struct{ n atomic.Int64 }

func (f *countFSM) Apply(l *raft.Log) interface{} {
	if l.Type == raft.LogCommand && len(l.Data) > 0 {
		f.n.Add(int64(l.Data[0]))
	}
	return nil
}
func (f *countFSM) Snapshot() (raft.FSMSnapshot, error) { return countSnap{}, nil }
func (f *countFSM) Restore(r io.ReadCloser) error       { return r.Close() }

type countSnap struct{}

func (countSnap) Persist(s raft.SnapshotSink) error { return s.Close() }
func (countSnap) Release()                          {}

// StartBaseline starts len(ips) voters, one per loopback IP (port chosen by
// the system), with their data under dir, bootstraps them and waits (up to
// 30 s) for a leader.
func StartBaseline(dir string, ips []string) (*Baseline, error) {
	if len(ips) == 0 {
		return nil, errors.New("consensus: baseline needs at least one voter")
	}
	b := &Baseline{}
	var servers []raft.Server
	for i, ip := range ips {
		cfg := DefaultConfig()
		cfg.ID = fmt.Sprintf("base%d", i+1)
		cfg.BindAddr = ip + ":0"
		cfg.DataDir = filepath.Join(dir, cfg.ID)
		cfg.Logger = slog.New(slog.DiscardHandler)
		st, err := openStores(cfg)
		if err != nil {
			b.Close()
			return nil, err
		}
		sl, err := newStreamLayer(cfg.BindAddr, "", nil, nil, nil)
		if err != nil {
			st.closer()
			b.Close()
			return nil, err
		}
		trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
			Stream: sl, MaxPool: 3, Timeout: 10 * time.Second, Logger: logx.HCLog(cfg.Logger, "raft-net"),
		})
		rc := raft.DefaultConfig()
		rc.LocalID = raft.ServerID(cfg.ID)
		rc.HeartbeatTimeout, rc.ElectionTimeout = cfg.HeartbeatTimeout, cfg.ElectionTimeout
		rc.LeaderLeaseTimeout, rc.CommitTimeout = cfg.LeaderLeaseTimeout, cfg.CommitTimeout
		rc.SnapshotInterval, rc.SnapshotThreshold, rc.TrailingLogs = cfg.SnapshotInterval, cfg.SnapshotThreshold, cfg.TrailingLogs
		rc.Logger = logx.HCLog(cfg.Logger, "raft")
		rc.NoLegacyTelemetry = true
		fsm := &countFSM{}
		r, err := raft.NewRaft(rc, fsm, st.logs, st.stable, st.snaps, trans)
		if err != nil {
			trans.Close()
			st.closer()
			b.Close()
			return nil, fmt.Errorf("consensus: start baseline raft: %w", err)
		}
		b.members = append(b.members, baselineMember{r: r, st: st, trans: trans, fsm: fsm})
		servers = append(servers, raft.Server{ID: rc.LocalID, Address: trans.LocalAddr()})
	}
	if err := b.members[0].r.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
		b.Close()
		return nil, fmt.Errorf("consensus: bootstrap baseline: %w", err)
	}
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		for _, m := range b.members {
			if m.r.State() == raft.Leader {
				b.leader = m.r
				return b, nil
			}
		}
	}
	b.Close()
	return nil, errors.New("consensus: baseline elected no leader within 30s")
}

// Apply commits one entry of 64 bytes that carries ops operations (1..255)
// through the leader and waits for it to be applied there.
func (b *Baseline) Apply(ops int, timeout time.Duration) error {
	if ops < 1 || ops > 255 {
		return fmt.Errorf("consensus: baseline entry carries 1..255 operations, not %d", ops)
	}
	var payload [64]byte
	payload[0] = byte(ops)
	return b.leader.Apply(payload[:], timeout).Error()
}

// Applied returns the operations the leader's state machine has counted.
func (b *Baseline) Applied() int64 {
	for _, m := range b.members {
		if m.r == b.leader {
			return m.fsm.n.Load()
		}
	}
	return 0
}

// Close stops every voter and closes its stores. The data stays on disk.
func (b *Baseline) Close() {
	for _, m := range b.members {
		m.r.Shutdown().Error()
		m.trans.Close()
		m.st.closer()
	}
	b.members = nil
}
