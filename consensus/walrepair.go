package consensus

import (
	"log/slog"

	"github.com/hashicorp/raft-wal/fs"
	"github.com/hashicorp/raft-wal/segment"
	"github.com/hashicorp/raft-wal/types"
)

// repairFiler works around a raft-wal v0.4.0 bug (hashicorp/raft-wal#31,
// the only version the module proxy serves): a suffix truncation inside the
// tail segment (raft's "clearing log suffix" when a follower's log
// conflicts with a new leader's) marks that segment sealed in the meta
// database without ever writing its index block. The running process reads
// it through the old writer and does not notice; the next start fails every
// read of it with "sealed segment has no index block", so the server cannot
// restart.
//
// Such a segment's frames are intact (only the index block is missing), so
// Open recovers it the way raft-wal recovers a tail after a crash: a scan of
// its committed frames builds the index in memory, read-only. raft-wal
// bounds reads by the segment's MaxIndex from the meta database, so the
// truncated entries still in the file are never returned. Nothing is
// written to the file.
type repairFiler struct {
	*segment.Filer
	logger *slog.Logger
}

func newRepairFiler(dir string, logger *slog.Logger) *repairFiler {
	return &repairFiler{Filer: segment.NewFiler(dir, fs.New()), logger: logger}
}

// Open opens a sealed segment, recovering its index if it has none.
func (f *repairFiler) Open(info types.SegmentInfo) (types.SegmentReader, error) {
	if info.SealTime.IsZero() || info.IndexStart != 0 {
		return f.Filer.Open(info)
	}
	f.logger.Warn("raft log segment sealed by a tail truncation has no index block (hashicorp/raft-wal#31); rebuilding its index by scanning it",
		"segment", segment.FileName(info), "base_index", info.BaseIndex, "max_index", info.MaxIndex)
	return f.Filer.RecoverTail(info)
}
