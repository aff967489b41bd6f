package consensus

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/kelpie/cluster/internal/logx"
	"github.com/kelpie/cluster/internal/netx"
)

// Errors returned by Server. All are wrapped with context; match with errors.Is.
var (
	// ErrNotLeader: this server is not the Raft leader. Retry on the leader.
	ErrNotLeader = errors.New("consensus: not the leader")
	// ErrLeadershipLost: leadership was lost while the entry was in flight.
	// The outcome is unknown (the entry may still commit); callers must
	// re-read before retrying anything that is not idempotent.
	ErrLeadershipLost = errors.New("consensus: leadership lost, outcome unknown")
	// ErrShutdown: the server is stopped.
	ErrShutdown = errors.New("consensus: raft is shut down")
	// ErrNotEnqueued: raft did not take the entry before the deadline; it
	// was never appended, so nothing can commit.
	ErrNotEnqueued = errors.New("consensus: entry not enqueued before the deadline")
)

// Config configures a Raft server.
type Config struct {
	// ID is the Raft server ID (the node ID). Required.
	ID string
	// BindAddr is the TCP ip:port Raft listens on. Port 0 picks a free port.
	BindAddr string
	// AdvertiseAddr is what peers dial; defaults to the bound address. It must
	// be a concrete IP, never 0.0.0.0.
	AdvertiseAddr string
	// DataDir holds the raft-wal log, stable store and snapshots. Empty means
	// in-memory stores: nothing survives a restart (dev mode only).
	DataDir string

	// HeartbeatTimeout: how long a follower waits without contact before
	// standing for election. Default 1s (raft's default; LAN round trips are
	// sub-millisecond, so this is all headroom for GC pauses and fsync).
	HeartbeatTimeout time.Duration
	// ElectionTimeout: how long a candidate waits for votes. Default 1s.
	ElectionTimeout time.Duration
	// LeaderLeaseTimeout: a leader that has not heard from a quorum within
	// this steps down (the isolated-leader self-fence, NoSplitBrain's
	// "step-down" bound). Default 500ms; must be ≤ HeartbeatTimeout.
	LeaderLeaseTimeout time.Duration
	// CommitTimeout bounds how long an idle leader waits before a heartbeat
	// carries the commit index. Default 50ms.
	CommitTimeout time.Duration
	// SnapshotInterval / SnapshotThreshold: check every interval, snapshot
	// when at least threshold entries are new. Defaults 2m / 8192 entries:
	// the view is small, so snapshots are cheap, but there is no need to
	// write them often.
	SnapshotInterval  time.Duration
	SnapshotThreshold uint64
	// TrailingLogs kept after a snapshot so slow followers catch up from the
	// log instead of a snapshot. Default 10240.
	TrailingLogs uint64

	// Filter is an optional in-process fault filter (tests only).
	Filter netx.Filter
	// TLSServer / TLSClient, when set, run the Raft transport over mutual
	// TLS: accepted connections are wrapped with TLSServer, dialled ones
	// with TLSClient (both must verify the peer).
	TLSServer, TLSClient *tls.Config
	// Logger receives raft's logs. Default: discard.
	Logger *slog.Logger
}

// DefaultConfig returns production timings (raft's own LAN defaults).
func DefaultConfig() Config {
	return Config{
		HeartbeatTimeout:   time.Second,
		ElectionTimeout:    time.Second,
		LeaderLeaseTimeout: 500 * time.Millisecond,
		CommitTimeout:      50 * time.Millisecond,
		SnapshotInterval:   2 * time.Minute,
		SnapshotThreshold:  8192,
		TrailingLogs:       10240,
	}
}

// TestConfig returns fast timings for in-process tests on loopback.
func TestConfig() Config {
	c := DefaultConfig()
	// Generous enough that -race on 2 busy cores does not cause elections.
	c.HeartbeatTimeout = 700 * time.Millisecond
	c.ElectionTimeout = 700 * time.Millisecond
	c.LeaderLeaseTimeout = 400 * time.Millisecond
	c.CommitTimeout = 10 * time.Millisecond
	return c
}

// Validate checks the configuration without changing it.
func (c Config) Validate() error {
	if c.ID == "" {
		return errors.New("consensus: ID is required")
	}
	if _, _, err := net.SplitHostPort(c.BindAddr); err != nil {
		return fmt.Errorf("consensus: bind address %q: %w", c.BindAddr, err)
	}
	if c.HeartbeatTimeout < 5*time.Millisecond || c.ElectionTimeout < 5*time.Millisecond ||
		c.LeaderLeaseTimeout < 5*time.Millisecond || c.CommitTimeout < time.Millisecond {
		return errors.New("consensus: raft timeouts too small (heartbeat/election/lease ≥ 5ms, commit ≥ 1ms)")
	}
	if c.LeaderLeaseTimeout > c.HeartbeatTimeout || c.HeartbeatTimeout > c.ElectionTimeout {
		return fmt.Errorf("consensus: need LeaderLeaseTimeout (%s) ≤ HeartbeatTimeout (%s) ≤ ElectionTimeout (%s)",
			c.LeaderLeaseTimeout, c.HeartbeatTimeout, c.ElectionTimeout)
	}
	return nil
}

// Peer is one server of the Raft configuration.
type Peer struct {
	ID      string `json:"id"`
	Address string `json:"address"`
	Voter   bool   `json:"voter"`
}

// Stats is a snapshot of the local Raft state.
type Stats struct {
	State        string    `json:"state"` // Leader, Follower, Candidate, Shutdown
	Term         uint64    `json:"term"`
	LastLogIndex uint64    `json:"last_log_index"`
	LastLogTerm  uint64    `json:"last_log_term"`
	CommitIndex  uint64    `json:"commit_index"`
	AppliedIndex uint64    `json:"applied_index"`
	LastContact  time.Time `json:"last_contact"` // last time a follower heard from the leader (zero on the leader)
	LeaderID     string    `json:"leader_id"`
	LeaderAddr   string    `json:"leader_addr"`
}

// Server owns one hashicorp/raft instance, its stores and its transport.
type Server struct {
	cfg    Config
	fsm    *FSM
	logger *slog.Logger

	mu struct {
		sync.Mutex
		raft    *raft.Raft
		stores  *stores
		trans   *raft.NetworkTransport
		closed  bool
		started bool
	}
	leaderCh chan bool
}

// NewServer validates cfg. It starts nothing.
func NewServer(cfg Config, fsm *FSM) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if fsm == nil {
		return nil, errors.New("consensus: nil FSM")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Server{cfg: cfg, fsm: fsm, logger: cfg.Logger, leaderCh: make(chan bool, 16)}, nil
}

// Start opens the stores and the transport and starts Raft. On a server with
// existing state Raft resumes from it; otherwise it waits to be bootstrapped
// or added by a leader.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.closed {
		return ErrShutdown
	}
	if s.mu.started {
		return errors.New("consensus: already started")
	}
	st, err := openStores(s.cfg)
	if err != nil {
		return err
	}
	sl, err := newStreamLayer(s.cfg.BindAddr, s.cfg.AdvertiseAddr, s.cfg.Filter, s.cfg.TLSServer, s.cfg.TLSClient)
	if err != nil {
		st.closer()
		return err
	}
	trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  sl,
		MaxPool: 3,
		Timeout: 10 * time.Second,
		Logger:  logx.HCLog(s.logger, "raft-net"),
	})
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(s.cfg.ID)
	rc.HeartbeatTimeout = s.cfg.HeartbeatTimeout
	rc.ElectionTimeout = s.cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = s.cfg.LeaderLeaseTimeout
	rc.CommitTimeout = s.cfg.CommitTimeout
	rc.SnapshotInterval = s.cfg.SnapshotInterval
	rc.SnapshotThreshold = s.cfg.SnapshotThreshold
	rc.TrailingLogs = s.cfg.TrailingLogs
	rc.NotifyCh = s.leaderCh
	rc.NoLegacyTelemetry = true
	rc.Logger = logx.HCLog(s.logger, "raft")
	if err := raft.ValidateConfig(rc); err != nil {
		trans.Close()
		st.closer()
		return fmt.Errorf("consensus: %w", err)
	}
	r, err := raft.NewRaft(rc, s.fsm, st.logs, st.stable, st.snaps, trans)
	if err != nil {
		trans.Close()
		st.closer()
		return fmt.Errorf("consensus: start raft: %w", err)
	}
	s.mu.raft, s.mu.stores, s.mu.trans, s.mu.started = r, st, trans, true
	return nil
}

func (s *Server) r() (*raft.Raft, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.closed || s.mu.raft == nil {
		return nil, ErrShutdown
	}
	return s.mu.raft, nil
}

// Addr is the advertised Raft address (after Start).
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.trans == nil {
		return ""
	}
	return string(s.mu.trans.LocalAddr())
}

// ID is the local server ID.
func (s *Server) ID() string { return s.cfg.ID }

// HasState reports whether the data dir already holds Raft state (a
// previous bootstrap or a join); such a server must never bootstrap again.
func (s *Server) HasState() (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.stores == nil {
		return false, ErrShutdown
	}
	return raft.HasExistingState(s.mu.stores.logs, s.mu.stores.stable, s.mu.stores.snaps)
}

// Bootstrap creates the initial configuration with the given voters.
func (s *Server) Bootstrap(peers []Peer) error {
	r, err := s.r()
	if err != nil {
		return err
	}
	var cfg raft.Configuration
	for _, p := range peers {
		suffrage := raft.Voter
		if !p.Voter {
			suffrage = raft.Nonvoter
		}
		cfg.Servers = append(cfg.Servers, raft.Server{ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.Address), Suffrage: suffrage})
	}
	if err := r.BootstrapCluster(cfg).Error(); err != nil {
		return fmt.Errorf("consensus: bootstrap: %w", err)
	}
	return nil
}

// LeaderCh delivers true/false on leadership changes. It may drop flips;
// consumers must re-check IsLeader.
func (s *Server) LeaderCh() <-chan bool { return s.leaderCh }

// IsLeader reports whether this server currently believes it is the leader.
// Use VerifyLeader before acting on it for reads.
func (s *Server) IsLeader() bool {
	r, err := s.r()
	return err == nil && r.State() == raft.Leader
}

// Term is this server's current Raft term (0 before start).
func (s *Server) Term() uint64 {
	r, err := s.r()
	if err != nil {
		return 0
	}
	return r.CurrentTerm()
}

// Leader returns the current leader's ID and Raft address, if known.
func (s *Server) Leader() (id, addr string) {
	r, err := s.r()
	if err != nil {
		return "", ""
	}
	a, i := r.LeaderWithID()
	return string(i), string(a)
}

// Stats returns the local Raft state.
func (s *Server) Stats() Stats {
	r, err := s.r()
	if err != nil {
		return Stats{State: "Shutdown"}
	}
	m := r.Stats()
	u := func(k string) uint64 { v, _ := strconv.ParseUint(m[k], 10, 64); return v }
	id, addr := s.Leader()
	st := Stats{
		State:        r.State().String(),
		Term:         u("term"),
		LastLogIndex: r.LastIndex(),
		LastLogTerm:  u("last_log_term"),
		CommitIndex:  u("commit_index"),
		AppliedIndex: r.AppliedIndex(),
		LeaderID:     id,
		LeaderAddr:   addr,
	}
	if r.State() != raft.Leader {
		st.LastContact = r.LastContact()
	}
	return st
}

// wait blocks on a raft future until it resolves or ctx ends.
func wait(ctx context.Context, f raft.Future) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return mapErr(err)
	case <-ctx.Done():
		return ctx.Err()
	}
}

func mapErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress):
		// A transfer in progress rejects the entry before it is appended:
		// nothing was applied, and the next leader will take it.
		return fmt.Errorf("%w: %v", ErrNotLeader, err)
	case errors.Is(err, raft.ErrLeadershipLost):
		return fmt.Errorf("%w: %v", ErrLeadershipLost, err)
	case errors.Is(err, raft.ErrRaftShutdown):
		return fmt.Errorf("%w: %v", ErrShutdown, err)
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return fmt.Errorf("%w: %v", ErrNotEnqueued, err)
	}
	return fmt.Errorf("consensus: %w", err)
}

// enqueueTimeout is how long Apply may wait to hand an entry to raft when ctx
// has no deadline.
const enqueueTimeout = 10 * time.Second

func timeoutOf(ctx context.Context) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		if d := time.Until(dl); d > 0 {
			return d
		}
		return time.Millisecond
	}
	return enqueueTimeout
}

// Apply proposes an encoded command and waits for it to be committed and
// applied, or for ctx to end. On ctx expiry the outcome is unknown: the entry
// may still commit. The returned result carries the FSM's verdict (Err may be
// ErrIllegalTransition, ErrNoChange, ...); the error is about Raft.
func (s *Server) Apply(ctx context.Context, cmd []byte) (*ApplyResult, error) {
	r, err := s.r()
	if err != nil {
		return nil, err
	}
	if r.State() != raft.Leader {
		return nil, ErrNotLeader
	}
	f := r.Apply(cmd, timeoutOf(ctx))
	if err := wait(ctx, f); err != nil {
		return nil, err
	}
	res, ok := f.Response().(*ApplyResult)
	if !ok {
		return nil, fmt.Errorf("consensus: unexpected FSM response %T", f.Response())
	}
	return res, nil
}

// Barrier waits until every preceding entry is applied locally (used by a
// new leader before acting on FSM state).
func (s *Server) Barrier(ctx context.Context) error {
	r, err := s.r()
	if err != nil {
		return err
	}
	return wait(ctx, r.Barrier(timeoutOf(ctx)))
}

// VerifyLeader confirms with a quorum that this server is still the leader.
func (s *Server) VerifyLeader(ctx context.Context) error {
	r, err := s.r()
	if err != nil {
		return err
	}
	return wait(ctx, r.VerifyLeader())
}

// Configuration returns the current Raft configuration, sorted by ID.
func (s *Server) Configuration() ([]Peer, error) {
	r, err := s.r()
	if err != nil {
		return nil, err
	}
	f := r.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, mapErr(err)
	}
	var out []Peer
	for _, srv := range f.Configuration().Servers {
		out = append(out, Peer{ID: string(srv.ID), Address: string(srv.Address), Voter: srv.Suffrage == raft.Voter})
	}
	sortPeers(out)
	return out, nil
}

// AddNonvoter adds a server as a non-voting member (a warm standby); voter
// management promotes it once it is stable.
func (s *Server) AddNonvoter(ctx context.Context, id, addr string) error {
	r, err := s.r()
	if err != nil {
		return err
	}
	return wait(ctx, r.AddNonvoter(raft.ServerID(id), raft.ServerAddress(addr), 0, timeoutOf(ctx)))
}

// RemoveServer removes a server from the configuration.
func (s *Server) RemoveServer(ctx context.Context, id string) error {
	r, err := s.r()
	if err != nil {
		return err
	}
	return wait(ctx, r.RemoveServer(raft.ServerID(id), 0, timeoutOf(ctx)))
}

// TransferLeadership hands leadership to another voter and waits for it.
func (s *Server) TransferLeadership(ctx context.Context) error {
	r, err := s.r()
	if err != nil {
		return err
	}
	return wait(ctx, r.LeadershipTransfer())
}

// Snapshot forces a snapshot now.
func (s *Server) Snapshot(ctx context.Context) error {
	r, err := s.r()
	if err != nil {
		return err
	}
	return wait(ctx, r.Snapshot())
}

// Shutdown stops Raft and closes the transport and stores. Idempotent.
func (s *Server) Shutdown() error {
	s.mu.Lock()
	if s.mu.closed {
		s.mu.Unlock()
		return nil
	}
	s.mu.closed = true
	r, st, trans := s.mu.raft, s.mu.stores, s.mu.trans
	s.mu.Unlock()
	var errs []error
	if r != nil {
		errs = append(errs, r.Shutdown().Error())
	}
	if trans != nil {
		errs = append(errs, trans.Close())
		// Close closes only the listener. The pooled outgoing connections
		// would stay open, and with them every peer's goroutine serving
		// one (in-process clusters leak them until the process exits).
		trans.CloseStreams()
	}
	if st != nil {
		errs = append(errs, st.closer())
	}
	return errors.Join(errs...)
}

// raw exposes the raft instance to voter management in this package.
func (s *Server) raw() *raft.Raft {
	r, _ := s.r()
	return r
}
