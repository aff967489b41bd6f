package cluster

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/kelpie/cluster/consensus"
	"github.com/kelpie/cluster/placement"
)

// Snapshots of the committed state, for operators (kelpiectl snapshot
// save|restore):
//
//	GET /v1/snapshot       the FSM snapshot document (JSON) of the committed
//	                       state: from the leader, or with ?stale from any
//	                       server; clients forward.
//	PUT /v1/snapshot       restore such a document cluster-wide (leader only;
//	                       forwarded). A corrupt document is a 400 and
//	                       changes nothing.
//
// The download carries X-Kelpie-Index (the Raft index it reflects: the
// document's "applied") and
// X-Kelpie-Snapshot-SHA256 (of the body) so that a saved file can be checked.

// maxSnapshotBytes caps an uploaded snapshot document.
const maxSnapshotBytes = 256 << 20

// Headers of GET /v1/snapshot.
const (
	headerIndex          = "X-Kelpie-Index"
	headerSnapshotSHA256 = "X-Kelpie-Snapshot-SHA256"
)

// SnapshotRestoreResult is the answer of PUT /v1/snapshot.
type SnapshotRestoreResult struct {
	consensus.RestoreReport
	// Deactivated lists the actors that were placed before the restore and
	// were deactivated on their owner first (every restored placement has a
	// new token, so actors start again under it on their next use).
	Deactivated []string `json:"deactivated"`
	// NotDeactivated lists such actors whose owner could not be reached; it
	// fences itself when its lease runs out.
	NotDeactivated []string `json:"not_deactivated,omitempty"`
}

// Snapshot returns the snapshot document of the committed state: read on
// the leader (forwarded from other nodes), or with stale on any server from
// its own replica (clients forward to a server).
func (n *Node) Snapshot(ctx context.Context, stale bool) ([]byte, error) {
	if n.fsm != nil && (stale || n.raft.IsLeader()) {
		if !stale {
			if err := n.verifier.verify(ctx); err != nil {
				return nil, fmt.Errorf("%w: %v", ErrNotLeader, err)
			}
		}
		return n.fsm.SnapshotBytes()
	}
	var out []byte
	err := n.forward(ctx, func(ctx context.Context, c *Client) error {
		var buf bytes.Buffer
		_, err := c.Snapshot(ctx, &buf, SnapshotOptions{Stale: stale})
		out = buf.Bytes()
		return err
	})
	return out, err
}

func (n *Node) handleSnapshotSave(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	stale := q.Has("stale") && q.Get("stale") != "false"
	data, err := n.Snapshot(r.Context(), stale)
	if err != nil {
		writeError(w, err)
		return
	}
	sum := sha256.Sum256(data)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(data)))
	h.Set(headerSnapshotSHA256, hex.EncodeToString(sum[:]))
	var doc struct {
		Applied uint64 `json:"applied"`
	}
	if json.Unmarshal(data, &doc) == nil {
		h.Set(headerIndex, strconv.FormatUint(doc.Applied, 10))
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(data)
}

// RestoreSnapshot replaces the committed state, cluster-wide, with the
// snapshot document data (as Snapshot returns it). The document is validated
// first: a corrupt one fails with ErrInvalidArgument and changes nothing. On
// the leader (forwarded otherwise) it is rebased onto the live cluster
// (consensus.Server.UserRestore: epoch and fencing tokens move forward;
// members Active on both sides are rebound to the live processes), every
// placed actor is deactivated on its owner, and raft installs it on every
// server; restored actors activate on their next use, under the restored
// placement's token. Without a quorum it fails with
// ErrNoQuorum. Writes racing with a restore are lost: it replaces the state
// they changed.
func (n *Node) RestoreSnapshot(ctx context.Context, data []byte) (SnapshotRestoreResult, error) {
	if _, err := consensus.ValidateSnapshot(data); err != nil {
		return SnapshotRestoreResult{}, fmt.Errorf("%w: %v", ErrInvalidArgument, err)
	}
	if n.raft != nil && n.raft.IsLeader() {
		return n.restoreLocal(ctx, data)
	}
	var out SnapshotRestoreResult
	err := n.forwardFor(ctx, n.cfg.QuorumTimeout+restoreBound, func(ctx context.Context, c *Client) error {
		r, err := c.RestoreSnapshot(ctx, bytes.NewReader(data))
		out = r
		return err
	})
	return out, err
}

// restoreBound bounds a restore on the leader beyond finding the leader:
// deactivating moved actors (one QuorumTimeout per unreachable owner at
// worst, in parallel) and raft installing the snapshot everywhere.
const restoreBound = 60 * time.Second

func (n *Node) restoreLocal(ctx context.Context, data []byte) (SnapshotRestoreResult, error) {
	out := SnapshotRestoreResult{Deactivated: []string{}}
	rep, err := n.raft.UserRestore(ctx, data, consensus.RestoreOptions{
		NowUnixNano: time.Now().UnixNano(),
		BeforeRestore: func(ctx context.Context, _ []placement.Placement) error {
			out.Deactivated, out.NotDeactivated = n.deactivateLive(ctx)
			return nil
		},
	})
	out.RestoreReport = rep
	switch {
	case err == nil:
		return out, nil
	case errors.Is(err, consensus.ErrInvalidSnapshot):
		err = fmt.Errorf("%w: %v", ErrInvalidArgument, err)
	case errors.Is(err, consensus.ErrNotLeader):
		err = fmt.Errorf("%w: %v", ErrNotLeader, err)
	}
	if len(out.Deactivated) > 0 {
		// Their placements are unchanged but their owners now refuse the
		// old tokens: they stay inactive until a restore succeeds (a retry
		// does it) or they are re-placed (drain, migrate, release).
		err = fmt.Errorf("restore failed after deactivating %d actors, which stay inactive until a restore succeeds: %w", len(out.Deactivated), err)
	}
	return out, err
}

// deactivateLive deactivates every placed actor on its current owner before
// a restore replaces the placements. Each restored placement carries a new
// token, so even an actor the restore leaves where it is must not keep
// running under its old one (hosts refuse older tokens only once they have
// deactivated them); it activates again under the restored placement on its
// next use. Owners that cannot be reached are reported; they fence
// themselves when their lease runs out.
func (n *Node) deactivateLive(ctx context.Context) (done, failed []string) {
	live, _ := n.fsm.Placements()
	type result struct {
		actor string
		err   error
	}
	results := make(chan result, len(live))
	sem := make(chan struct{}, max(1, n.cfg.DrainConcurrency))
	for _, p := range live {
		go func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			results <- result{p.Actor, n.deactivateOn(ctx, p)}
		}()
	}
	done = []string{}
	for range live {
		r := <-results
		if r.err != nil {
			n.logger.Warn("restore: could not deactivate an actor on its owner; its lease fences it", "actor", r.actor, "err", r.err)
			failed = append(failed, r.actor)
			continue
		}
		done = append(done, r.actor)
	}
	slices.Sort(done)
	slices.Sort(failed)
	return done, failed
}

func (n *Node) handleSnapshotRestore(w http.ResponseWriter, r *http.Request) {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxSnapshotBytes))
	if err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			err = fmt.Errorf("%w: snapshot larger than %d bytes", ErrInvalidArgument, int64(maxSnapshotBytes))
		} else {
			err = fmt.Errorf("%w: request body: %v", ErrInvalidArgument, err)
		}
		writeError(w, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), n.cfg.QuorumTimeout+restoreBound)
	defer cancel()
	out, err := n.RestoreSnapshot(ctx, data)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}
