package consensus

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	autopilot "github.com/hashicorp/raft-autopilot"

	"github.com/kelpie/cluster/internal/logx"
)

// KnownServer is a server as the application (gossip plus the committed view)
// sees it.
type KnownServer struct {
	ID       string
	RaftAddr string
	Version  string
	// Status is "alive", "failed" or "left" (anything else counts as unknown).
	Status string
}

// RaftHealth is what a server reports about its own Raft log, used to judge
// whether it is caught up enough to vote.
type RaftHealth struct {
	LastContact time.Duration `json:"last_contact_ns"` // since it last heard from the leader; 0 on the leader
	LastTerm    uint64        `json:"last_term"`
	LastIndex   uint64        `json:"last_index"`
}

// VoterDelegate is what voter management needs from the node.
type VoterDelegate interface {
	// KnownServers lists every server the node knows of.
	KnownServers() []KnownServer
	// FetchHealth asks each listed remote server for its RaftHealth. Missing
	// entries count as unhealthy. It must respect ctx.
	FetchHealth(ctx context.Context, servers []KnownServer) map[string]RaftHealth
	// RemoveFailed is told that a failed server may now safely leave the Raft
	// configuration. It must return at once.
	RemoveFailed(id string)
}

// VoterConfig tunes voter management.
type VoterConfig struct {
	// Voters is the number of voters the leader keeps (1, 3, 5 or 7).
	// Default 3: tolerates one failure at the cost of one extra fsync round
	// trip per commit; 5 tolerates two.
	Voters int
	// StabilizationTime: a standby must be healthy this long before it is
	// promoted. Default 10s, long enough to ride out a flapping node.
	StabilizationTime time.Duration
	// LastContactThreshold: a server that has not heard from the leader for
	// longer is unhealthy. Default 2s (two heartbeat timeouts).
	LastContactThreshold time.Duration
	// MaxTrailingLogs: a server further behind the leader's log is unhealthy.
	// Default 250 entries.
	MaxTrailingLogs uint64
	// UpdateInterval: how often server health is refreshed. Default 2s.
	UpdateInterval time.Duration
	// ReconcileInterval: how often promotions, demotions and removals are
	// computed. Default 5s.
	ReconcileInterval time.Duration
}

// DefaultVoterConfig returns production settings.
func DefaultVoterConfig() VoterConfig {
	return VoterConfig{
		Voters:               3,
		StabilizationTime:    10 * time.Second,
		LastContactThreshold: 2 * time.Second,
		MaxTrailingLogs:      250,
		UpdateInterval:       2 * time.Second,
		ReconcileInterval:    5 * time.Second,
	}
}

// Validate checks the configuration without changing it.
func (c VoterConfig) Validate() error {
	switch c.Voters {
	case 1, 3, 5, 7:
	default:
		return fmt.Errorf("consensus: voters must be 1, 3, 5 or 7, not %d", c.Voters)
	}
	if c.StabilizationTime < 0 || c.LastContactThreshold <= 0 || c.UpdateInterval <= 0 || c.ReconcileInterval <= 0 {
		return errors.New("consensus: voter timings must be positive")
	}
	return nil
}

// VoterState is voter management's latest verdict, for the API.
type VoterState struct {
	Healthy          bool          `json:"healthy"`
	FailureTolerance int           `json:"failure_tolerance"`
	Target           int           `json:"target"`
	Servers          []ServerState `json:"servers"`
}

// ServerState is one server's role and health.
type ServerState struct {
	ID          string    `json:"id"`
	Address     string    `json:"address"`
	Suffrage    string    `json:"suffrage"` // leader, voter, non-voter, staging, none
	Healthy     bool      `json:"healthy"`
	StableSince time.Time `json:"stable_since"`
	LastContact string    `json:"last_contact"`
	LastIndex   uint64    `json:"last_index"`
	LastTerm    uint64    `json:"last_term"`
	NodeStatus  string    `json:"node_status"`
}

// VoterManager keeps exactly Voters voters among healthy servers, promotes a
// standby when a voter fails, and removes dead servers without dropping
// below quorum. It wraps hashicorp/raft-autopilot with our own promoter.
// Run it only on the leader: Start on gaining leadership, Stop on losing it.
type VoterManager struct {
	srv *Server
	d   VoterDelegate
	cfg VoterConfig
	ap  *autopilot.Autopilot

	mu      sync.Mutex
	running bool
}

// NewVoterManager builds a manager; Server must be started.
func NewVoterManager(srv *Server, d VoterDelegate, cfg VoterConfig) (*VoterManager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := srv.raw()
	if r == nil {
		return nil, ErrShutdown
	}
	vm := &VoterManager{srv: srv, d: d, cfg: cfg}
	vm.ap = autopilot.New(r, &apDelegate{vm: vm},
		autopilot.WithLogger(logx.HCLog(srv.logger, "autopilot")),
		autopilot.WithPromoter(&exactPromoter{target: cfg.Voters}),
		autopilot.WithUpdateInterval(cfg.UpdateInterval),
		autopilot.WithReconcileInterval(cfg.ReconcileInterval),
	)
	return vm, nil
}

// Start begins managing voters. Call only while leader. Idempotent.
func (vm *VoterManager) Start(ctx context.Context) {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	if vm.running {
		return
	}
	vm.running = true
	vm.ap.Start(ctx)
}

// Stop stops managing voters and waits for it to finish. Idempotent.
func (vm *VoterManager) Stop() {
	vm.mu.Lock()
	running := vm.running
	vm.running = false
	vm.mu.Unlock()
	if running {
		<-vm.ap.Stop()
	}
}

// AddServer adds a server to Raft as a non-voter (promotion comes later).
func (vm *VoterManager) AddServer(ks KnownServer) error {
	return mapErr(vm.ap.AddServer(&autopilot.Server{
		ID: raft.ServerID(ks.ID), Name: ks.ID, Address: raft.ServerAddress(ks.RaftAddr),
		NodeStatus: nodeStatus(ks.Status), Version: ks.Version, RaftVersion: raft.ProtocolVersionMax,
	}))
}

// RemoveServer removes a server from the Raft configuration if present.
func (vm *VoterManager) RemoveServer(id string) error {
	return mapErr(vm.ap.RemoveServer(raft.ServerID(id)))
}

// State returns the latest health verdict (nil before the first update).
func (vm *VoterManager) State() *VoterState {
	st := vm.ap.GetState()
	if st == nil {
		return nil
	}
	out := &VoterState{Healthy: st.Healthy, FailureTolerance: st.FailureTolerance, Target: vm.cfg.Voters}
	for id, s := range st.Servers {
		out.Servers = append(out.Servers, ServerState{
			ID: string(id), Address: string(s.Server.Address), Suffrage: string(s.State),
			Healthy: s.Health.Healthy, StableSince: s.Health.StableSince,
			LastContact: s.Stats.LastContact.String(), LastIndex: s.Stats.LastIndex, LastTerm: s.Stats.LastTerm,
			NodeStatus: string(s.Server.NodeStatus),
		})
	}
	sort.Slice(out.Servers, func(i, j int) bool { return out.Servers[i].ID < out.Servers[j].ID })
	return out
}

// LocalHealth reports this server's own RaftHealth (served to the leader).
func (s *Server) LocalHealth() RaftHealth {
	st := s.Stats()
	h := RaftHealth{LastTerm: st.LastLogTerm, LastIndex: st.LastLogIndex}
	if st.State != raft.Leader.String() {
		if st.LastContact.IsZero() {
			h.LastContact = -1 // never heard from a leader
		} else {
			h.LastContact = time.Since(st.LastContact)
		}
	}
	return h
}

func nodeStatus(s string) autopilot.NodeStatus {
	switch s {
	case "alive":
		return autopilot.NodeAlive
	case "failed":
		return autopilot.NodeFailed
	case "left":
		return autopilot.NodeLeft
	}
	return autopilot.NodeUnknown
}

// apDelegate adapts VoterDelegate to autopilot.ApplicationIntegration.
type apDelegate struct{ vm *VoterManager }

func (a *apDelegate) AutopilotConfig() *autopilot.Config {
	c := a.vm.cfg
	return &autopilot.Config{
		CleanupDeadServers:      true,
		LastContactThreshold:    c.LastContactThreshold,
		MaxTrailingLogs:         c.MaxTrailingLogs,
		MinQuorum:               uint(c.Voters),
		ServerStabilizationTime: c.StabilizationTime,
	}
}

func (a *apDelegate) NotifyState(*autopilot.State) {}

func (a *apDelegate) KnownServers() map[raft.ServerID]*autopilot.Server {
	out := make(map[raft.ServerID]*autopilot.Server)
	leaderID, _ := a.vm.srv.Leader()
	for _, ks := range a.vm.d.KnownServers() {
		out[raft.ServerID(ks.ID)] = &autopilot.Server{
			ID: raft.ServerID(ks.ID), Name: ks.ID, Address: raft.ServerAddress(ks.RaftAddr),
			NodeStatus: nodeStatus(ks.Status), Version: ks.Version,
			RaftVersion: raft.ProtocolVersionMax, IsLeader: ks.ID == leaderID,
		}
	}
	return out
}

func (a *apDelegate) FetchServerStats(ctx context.Context, servers map[raft.ServerID]*autopilot.Server) map[raft.ServerID]*autopilot.ServerStats {
	out := make(map[raft.ServerID]*autopilot.ServerStats)
	local := a.vm.srv.ID()
	var remote []KnownServer
	for id, s := range servers {
		if string(id) == local {
			h := a.vm.srv.LocalHealth()
			out[id] = &autopilot.ServerStats{LastContact: h.LastContact, LastTerm: h.LastTerm, LastIndex: h.LastIndex}
			continue
		}
		if s.NodeStatus == autopilot.NodeAlive {
			remote = append(remote, KnownServer{ID: string(id), RaftAddr: string(s.Address), Status: "alive"})
		}
	}
	if len(remote) > 0 {
		for id, h := range a.vm.d.FetchHealth(ctx, remote) {
			out[raft.ServerID(id)] = &autopilot.ServerStats{LastContact: h.LastContact, LastTerm: h.LastTerm, LastIndex: h.LastIndex}
		}
	}
	return out
}

func (a *apDelegate) RemoveFailedServer(s *autopilot.Server) {
	a.vm.d.RemoveFailed(string(s.ID))
}

// exactPromoter keeps exactly target voters: it promotes stable standbys
// while fewer healthy voters exist, demotes failed voters once replacements
// exist, and demotes surplus healthy voters (never the leader). Choices are
// made in ID order so they are deterministic.
type exactPromoter struct {
	autopilot.StablePromoter
	target int
}

func (p *exactPromoter) CalculatePromotionsAndDemotions(c *autopilot.Config, s *autopilot.State) autopilot.RaftChanges {
	now := time.Now()
	minStable := s.ServerStabilizationTime(c)
	var healthy, unhealthy, candidates []raft.ServerID
	for id, srv := range s.Servers {
		switch {
		case srv.HasVotingRights() && srv.Health.Healthy:
			healthy = append(healthy, id)
		case srv.HasVotingRights():
			unhealthy = append(unhealthy, id)
		case srv.State == autopilot.RaftNonVoter && srv.Health.IsStable(now, minStable):
			candidates = append(candidates, id)
		}
	}
	for _, l := range [][]raft.ServerID{healthy, unhealthy, candidates} {
		sort.Slice(l, func(i, j int) bool { return l[i] < l[j] })
	}
	return planVoters(p.target, s.Leader, healthy, unhealthy, candidates)
}

// planVoters is the pure core of exactPromoter.
func planVoters(target int, leader raft.ServerID, healthy, unhealthy, candidates []raft.ServerID) autopilot.RaftChanges {
	var ch autopilot.RaftChanges
	if need := target - len(healthy); need > 0 {
		if need > len(candidates) {
			need = len(candidates)
		}
		ch.Promotions = append(ch.Promotions, candidates[:need]...)
	}
	// A failed voter is demoted only once enough healthy voters (existing or
	// being promoted) exist to take its place; otherwise demoting it would
	// only shrink the voter set without adding safety.
	if len(healthy)+len(ch.Promotions) >= target {
		ch.Demotions = append(ch.Demotions, unhealthy...)
	}
	if excess := len(healthy) - target; excess > 0 {
		for i := len(healthy) - 1; i >= 0 && excess > 0; i-- {
			if healthy[i] != leader {
				ch.Demotions = append(ch.Demotions, healthy[i])
				excess--
			}
		}
	}
	return ch
}

func sortPeers(p []Peer) { sort.Slice(p, func(i, j int) bool { return p[i].ID < p[j].ID }) }
