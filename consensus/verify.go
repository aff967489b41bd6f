package consensus

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"path/filepath"

	"github.com/hashicorp/raft"
)

// ErrCorruptState: the data dir holds a Raft log or snapshot that fails its
// checksum or cannot be decoded. Start refuses to run on it (it never starts
// empty instead) and leaves the files untouched for inspection or restore.
var ErrCorruptState = errors.New("consensus: corrupt raft state")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// crcLogStore wraps the durable log store and seals every entry with a
// CRC-32C trailer (over index, term, type and data) appended to its Data, so
// a flipped bit anywhere in an entry is detected on read instead of being
// applied. It is transparent to Raft.
//
// (raft-wal v0.4.0 cannot take a custom codec: WithCodec refuses IDs below
// 65536 while new segments are always stamped with CodecBinaryV1, and
// segments whose codec ID differs are refused on reopen.)
type crcLogStore struct {
	inner raft.LogStore
}

// crcTrailer is "KC" + CRC-32C, appended to Data.
const crcTrailer = 6

func entrySum(l *raft.Log, data []byte) uint32 {
	var hdr [17]byte
	binary.BigEndian.PutUint64(hdr[0:], l.Index)
	binary.BigEndian.PutUint64(hdr[8:], l.Term)
	hdr[16] = byte(l.Type)
	sum := crc32.Update(0, castagnoli, hdr[:])
	return crc32.Update(sum, castagnoli, data)
}

func seal(l *raft.Log) *raft.Log {
	c := *l
	d := make([]byte, len(l.Data), len(l.Data)+crcTrailer)
	copy(d, l.Data)
	var t [crcTrailer]byte
	t[0], t[1] = 'K', 'C'
	binary.BigEndian.PutUint32(t[2:], entrySum(l, l.Data))
	c.Data = append(d, t[:]...)
	return &c
}

func (s *crcLogStore) FirstIndex() (uint64, error) { return s.inner.FirstIndex() }
func (s *crcLogStore) LastIndex() (uint64, error)  { return s.inner.LastIndex() }

func (s *crcLogStore) GetLog(index uint64, l *raft.Log) error {
	if err := s.inner.GetLog(index, l); err != nil {
		return err
	}
	n := len(l.Data)
	if n < crcTrailer || l.Data[n-crcTrailer] != 'K' || l.Data[n-crcTrailer+1] != 'C' {
		return fmt.Errorf("%w: entry %d has no checksum trailer", ErrCorruptState, index)
	}
	data := l.Data[:n-crcTrailer]
	if binary.BigEndian.Uint32(l.Data[n-4:]) != entrySum(l, data) || l.Index != index {
		return fmt.Errorf("%w: entry %d checksum mismatch", ErrCorruptState, index)
	}
	l.Data = data
	return nil
}

func (s *crcLogStore) StoreLog(l *raft.Log) error { return s.inner.StoreLog(seal(l)) }

func (s *crcLogStore) StoreLogs(logs []*raft.Log) error {
	sealed := make([]*raft.Log, len(logs))
	for i, l := range logs {
		sealed[i] = seal(l)
	}
	return s.inner.StoreLogs(sealed)
}

func (s *crcLogStore) DeleteRange(min, max uint64) error { return s.inner.DeleteRange(min, max) }

// IsMonotonic forwards raft-wal's promise (raft then never expects gaps).
func (s *crcLogStore) IsMonotonic() bool {
	m, ok := s.inner.(raft.MonotonicLogStore)
	return ok && m.IsMonotonic()
}

// verifyStores reads every log entry and decodes the newest snapshot
// through a scratch FSM, before Raft is started on them.
func verifyStores(cfg Config, st *stores) error {
	walDir := filepath.Join(cfg.DataDir, "raft", "wal")
	first, err := st.logs.FirstIndex()
	if err != nil {
		return fmt.Errorf("%w: raft log in %s: %v", ErrCorruptState, walDir, err)
	}
	last, err := st.logs.LastIndex()
	if err != nil {
		return fmt.Errorf("%w: raft log in %s: %v", ErrCorruptState, walDir, err)
	}
	if first > 0 {
		var l raft.Log
		for i := first; i <= last; i++ {
			if err := st.logs.GetLog(i, &l); err != nil {
				return fmt.Errorf("%w: raft log in %s, entry %d of %d-%d: %v (the files were left untouched)", ErrCorruptState, walDir, i, first, last, err)
			}
		}
	}
	metas, err := st.snaps.List()
	if err != nil {
		return fmt.Errorf("%w: snapshots in %s: %v", ErrCorruptState, filepath.Join(cfg.DataDir, "raft", "snapshots"), err)
	}
	if len(metas) == 0 {
		return nil
	}
	snapDir := filepath.Join(cfg.DataDir, "raft", "snapshots", metas[0].ID)
	_, rc, err := st.snaps.Open(metas[0].ID)
	if err != nil {
		return fmt.Errorf("%w: snapshot %s: %v (the files were left untouched)", ErrCorruptState, snapDir, err)
	}
	defer rc.Close()
	if err := NewFSM().Restore(rc); err != nil {
		return fmt.Errorf("%w: snapshot %s: %v (the files were left untouched)", ErrCorruptState, snapDir, err)
	}
	return nil
}
