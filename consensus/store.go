package consensus

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"

	"github.com/kelpie/cluster/internal/logx"
)

// stores bundles the three Raft stores and whatever must be closed with them.
type stores struct {
	logs   raft.LogStore
	stable raft.StableStore
	snaps  raft.SnapshotStore
	closer func() error
}

// logCacheSize is how many of the newest log entries are kept in memory in
// front of the durable log. The leader reads every entry back from its log
// store to send it to each follower; with the cache those reads of entries it
// has just written never touch raft-wal (decode, CRC check, copy). 512 is
// what Consul uses; at our batch sizes it is a few MiB at most.
const logCacheSize = 512

// retainSnapshots is how many snapshots the file store keeps; two lets a
// crash during the write of a new one fall back to the previous one.
const retainSnapshots = 2

// openStores opens durable stores under dir (raft-wal for the log and stable
// store, fsync on every append; a file snapshot store), or in-memory stores
// when dir is empty (dev mode and tests that do not restart).
func openStores(cfg Config) (*stores, error) {
	if cfg.DataDir == "" {
		return &stores{
			logs:   raft.NewInmemStore(),
			stable: raft.NewInmemStore(),
			snaps:  raft.NewInmemSnapshotStore(),
			closer: func() error { return nil },
		}, nil
	}
	walDir := filepath.Join(cfg.DataDir, "raft", "wal")
	snapDir := filepath.Join(cfg.DataDir, "raft")
	if err := os.MkdirAll(walDir, 0o700); err != nil {
		return nil, fmt.Errorf("consensus: create %s: %w", walDir, err)
	}
	// raft-wal's WAL.Close does not close its bbolt meta database, so we own
	// it: otherwise reopening the same directory in-process blocks forever
	// on the file lock.
	meta := &metadb.BoltMetaDB{}
	w, err := wal.Open(walDir, wal.WithMetaStore(meta), wal.WithSegmentFiler(newRepairFiler(walDir, cfg.Logger)),
		wal.WithLogger(logx.HCLog(cfg.Logger, "raft-wal")))
	if err != nil {
		meta.Close()
		return nil, fmt.Errorf("consensus: open raft log in %s: %w", walDir, err)
	}
	var logOut io.Writer = &logx.StdWriter{L: cfg.Logger.With("component", "raft-snapshot")}
	snaps, err := raft.NewFileSnapshotStore(snapDir, retainSnapshots, logOut)
	if err != nil {
		w.Close()
		meta.Close()
		return nil, fmt.Errorf("consensus: open snapshot store in %s: %w", snapDir, err)
	}
	st := &stores{
		logs:   &crcLogStore{inner: w},
		stable: w,
		snaps:  snaps,
		closer: func() error { return errors.Join(w.Close(), meta.Close()) },
	}
	if err := verifyStores(cfg, st); err != nil {
		st.closer()
		return nil, err
	}
	cache, err := raft.NewLogCache(logCacheSize, st.logs)
	if err != nil {
		st.closer()
		return nil, fmt.Errorf("consensus: log cache: %w", err)
	}
	st.logs = cache
	return st, nil
}
