package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kelpie/cluster/consensus"
	"github.com/kelpie/cluster/gossip"
	"github.com/kelpie/cluster/internal/netx"
	"github.com/kelpie/cluster/migration"
	"github.com/kelpie/cluster/placement"
)

// Default ports. A node uses three: HTTP API, gossip (TCP+UDP) and Raft (TCP,
// servers only).
const (
	DefaultHTTPPort   = 7500
	DefaultGossipPort = 7501
	DefaultRaftPort   = 7502
)

// Config configures a Node. Build it from DefaultConfig and override fields;
// Validate reports what is wrong without changing anything.
type Config struct {
	// NodeID names the node in gossip, Raft and the view. Required; 1–128
	// characters of [A-Za-z0-9._-]. It must be unique in the cluster.
	NodeID string
	// BindAddr is the IP every listener binds and every outgoing connection
	// uses as its source. It must be a concrete IP (the fault-injection suite
	// tells nodes apart by it). Default 127.0.0.1.
	BindAddr string
	// HTTPPort, GossipPort, RaftPort: 0 picks a free port (tests).
	HTTPPort, GossipPort, RaftPort int
	// DataDir holds Raft state (servers). Empty means in-memory Raft stores:
	// nothing survives a restart. Created 0700 if missing.
	DataDir string

	// Server makes this node run Raft (a voter or warm standby). Clients
	// (the default) follow the committed state from servers.
	Server bool
	// BootstrapExpect: when > 0 on a server with no Raft state, wait until this
	// many servers with the same setting see each other in gossip, then the
	// one with the lowest ID bootstraps Raft with all of them as voters.
	BootstrapExpect int
	// Zone and Version are carried in gossip tags and the view.
	Zone, Version string

	// ReconcileInterval: how often the leader runs a full reconcile of gossip
	// against the committed view, repairing any dropped event. Default 3s.
	ReconcileInterval time.Duration
	// ReconcileBatchDelay: after a gossip event the leader waits until no
	// further event has come for this long (but at most 10× this long in
	// all), so that changes arriving together commit as one view change: a
	// join storm produces about one epoch per 10× this. Default 100ms.
	ReconcileBatchDelay time.Duration
	// MissingMemberGrace: a member in the view that gossip does not know at
	// all is marked Failed only after the leader's gossip has run this long
	// (after a restart, gossip needs time to rediscover everyone). Default 30s.
	MissingMemberGrace time.Duration
	// FailureHold: when gossip declares a member failed, the leader first
	// tries to connect to the member's HTTP port. Refused or unanswered (a
	// crashed process, a dead or cut-off host), the Failed verdict commits
	// at once; accepted (the process is there but paused or starved — the
	// kernel still accepts for it), the verdict is held back, re-checked on
	// every reconcile, for at most this long after it was first seen, so a
	// GC or scheduling pause does not cost a member its actors. 0 disables
	// the check. Default 5s.
	FailureHold time.Duration
	// QuorumTimeout bounds every view-change attempt: without a reachable
	// quorum it fails with ErrNoQuorum within this time. Default 5s.
	QuorumTimeout time.Duration
	// InvokeTimeout bounds one request from a router to an actor's owner.
	// Past it the outcome is unknown (ErrUnknownOutcome). Default 10s.
	InvokeTimeout time.Duration
	// FollowWait is the blocking-query wait clients use when following the
	// view from servers. Default 30s.
	FollowWait time.Duration

	// Lease configures membership leases (G6): every Active node renews its
	// lease with the leader every Lease.Duration/3 and fences itself when it
	// runs out; the leader re-places a lost node's actors only after
	// Lease.Duration + Lease.Margin. Default 4s + 1s.
	Lease placement.LeaseConfig
	// Capacity is the most actors this node will host; 0 means unlimited.
	// Advertised through gossip and honoured by the leader's policy.
	Capacity int
	// Labels are advertised through gossip; placements may require them.
	Labels map[string]string

	// Rebalance moves actors from overloaded nodes, a bounded number per
	// round. Off by default (see RebalanceConfig).
	Rebalance RebalanceConfig
	// Migration tunes the migration coordinator (phase timeout, cooldown).
	Migration migration.Config
	// MaxStateBytes caps the state one actor may carry in a migration.
	// Default 64 MiB; larger states fail the migration (it aborts).
	MaxStateBytes int64
	// DrainConcurrency is how many migrations a drain runs at once.
	// Default 16.
	DrainConcurrency int
	// DrainTimeout bounds the drain that Leave does before it falls back to
	// releasing what is left. Default 2m.
	DrainTimeout time.Duration

	// Gossip is the failure-detector profile (NodeName, BindAddr, ports and
	// tags are filled in by the node).
	Gossip gossip.Config
	// Raft timings (ID, addresses and DataDir are filled in by the node).
	Raft consensus.Config
	// Voters configures voter management (servers).
	Voters consensus.VoterConfig

	// ACLToken, when set, is required by every write and internal endpoint
	// (and accepted by reads); nodes of one cluster share it. ACLReadToken,
	// when set, additionally opens the read endpoints. Empty: no access
	// control (only on trusted networks).
	ACLToken, ACLReadToken string
	// TLS secures the HTTP API and all node-to-node traffic (HTTP and Raft,
	// mutually authenticated). Empty: plaintext.
	TLS TLSConfig
	// EncryptKey is the base64 gossip encryption key (16, 24 or 32 bytes,
	// AES-GCM). Nodes without the right key cannot join. On first start it
	// seeds the keyring, persisted in DataDir; later the keyring file wins
	// (rotate with the keyring API).
	EncryptKey string

	// Handlers are extra application routes ("METHOD /path" patterns of
	// net/http.ServeMux) served on the node's HTTP API, e.g. a demo host's
	// own endpoints. They must not collide with /v1/ routes of the library.
	Handlers map[string]http.Handler

	// Logger receives structured logs. Default: discard.
	Logger *slog.Logger
	// Registry receives the node's metrics. Default: a fresh registry.
	Registry *prometheus.Registry
	// Filter is an in-process network fault filter (tests only).
	Filter netx.Filter
}

// DefaultConfig returns production settings for a client node on 127.0.0.1.
func DefaultConfig() Config {
	return Config{
		BindAddr:            "127.0.0.1",
		HTTPPort:            DefaultHTTPPort,
		GossipPort:          DefaultGossipPort,
		RaftPort:            DefaultRaftPort,
		ReconcileInterval:   3 * time.Second,
		ReconcileBatchDelay: 100 * time.Millisecond,
		MissingMemberGrace:  30 * time.Second,
		FailureHold:         5 * time.Second,
		QuorumTimeout:       5 * time.Second,
		FollowWait:          30 * time.Second,
		InvokeTimeout:       10 * time.Second,
		Lease:               placement.DefaultLeaseConfig(),
		Migration:           migration.DefaultConfig(),
		Rebalance:           DefaultRebalanceConfig(),
		MaxStateBytes:       64 << 20,
		DrainConcurrency:    16,
		DrainTimeout:        2 * time.Minute,
		Gossip:              gossip.DefaultConfig(),
		Raft:                consensus.DefaultConfig(),
		Voters:              consensus.DefaultVoterConfig(),
	}
}

// TestConfig returns fast settings for in-process clusters on loopback:
// ephemeral ports, short timeouts, short stabilisation.
func TestConfig() Config {
	c := DefaultConfig()
	c.HTTPPort, c.GossipPort, c.RaftPort = 0, 0, 0
	c.ReconcileInterval = 500 * time.Millisecond
	c.ReconcileBatchDelay = 20 * time.Millisecond
	c.MissingMemberGrace = 3 * time.Second
	c.QuorumTimeout = 3 * time.Second
	c.FollowWait = 2 * time.Second
	c.InvokeTimeout = 2 * time.Second
	c.Migration.Cooldown = 0
	c.Migration.PhaseTimeout = 5 * time.Second
	c.DrainTimeout = 30 * time.Second
	// Long enough that -race on 2 busy cores does not fence healthy nodes.
	c.Lease = placement.LeaseConfig{Duration: 2 * time.Second, Margin: 500 * time.Millisecond}
	c.Gossip = gossip.TestConfig()
	c.Raft = consensus.TestConfig()
	c.Voters.StabilizationTime = 500 * time.Millisecond
	c.Voters.UpdateInterval = 200 * time.Millisecond
	c.Voters.ReconcileInterval = 300 * time.Millisecond
	c.Voters.LastContactThreshold = time.Second
	return c
}

// ValidID reports whether s is a legal node (or actor) ID: 1–128 characters
// of [A-Za-z0-9._-].
func ValidID(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !idByte[s[i]] {
			return false
		}
	}
	return true
}

// idByte[c] reports whether c may appear in an ID (one table load per byte:
// ValidID runs on every Lookup and Place).
var idByte = func() (t [256]bool) {
	for c := 0; c < 256; c++ {
		t[c] = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
	}
	return t
}()

// Validate checks the configuration without changing it.
func (c Config) Validate() error {
	var errs []error
	if !ValidID(c.NodeID) {
		errs = append(errs, fmt.Errorf("NodeID %q: need 1-128 characters of [A-Za-z0-9._-]", c.NodeID))
	}
	ip := net.ParseIP(c.BindAddr)
	if ip == nil || ip.IsUnspecified() {
		errs = append(errs, fmt.Errorf("BindAddr %q: need a concrete IP address", c.BindAddr))
	}
	for name, p := range map[string]int{"HTTPPort": c.HTTPPort, "GossipPort": c.GossipPort, "RaftPort": c.RaftPort} {
		if p < 0 || p > 65535 {
			errs = append(errs, fmt.Errorf("%s %d out of range", name, p))
		}
	}
	if c.BootstrapExpect < 0 || c.BootstrapExpect > 7 {
		errs = append(errs, fmt.Errorf("BootstrapExpect %d: need 0-7", c.BootstrapExpect))
	}
	if c.BootstrapExpect > 0 && !c.Server {
		errs = append(errs, errors.New("BootstrapExpect needs Server"))
	}
	for name, d := range map[string]time.Duration{
		"ReconcileInterval": c.ReconcileInterval, "QuorumTimeout": c.QuorumTimeout,
		"FollowWait": c.FollowWait, "MissingMemberGrace": c.MissingMemberGrace,
		"InvokeTimeout": c.InvokeTimeout,
	} {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive", name))
		}
	}
	if err := c.TLS.validate(); err != nil {
		errs = append(errs, err)
	}
	if c.ACLReadToken != "" && c.ACLToken == "" {
		errs = append(errs, errors.New("ACLReadToken needs ACLToken"))
	}
	if c.ACLReadToken != "" && c.ACLReadToken == c.ACLToken {
		errs = append(errs, errors.New("ACLReadToken must differ from ACLToken"))
	}
	if err := c.Lease.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Migration.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.Rebalance.Enabled && (c.Rebalance.Interval <= 0 || c.Rebalance.Ratio < 1 || c.Rebalance.MaxPerRound <= 0) {
		errs = append(errs, errors.New("Rebalance: need Interval > 0, Ratio ≥ 1 and MaxPerRound > 0"))
	}
	if c.MaxStateBytes <= 0 || c.DrainConcurrency <= 0 || c.DrainTimeout <= 0 {
		errs = append(errs, errors.New("MaxStateBytes, DrainConcurrency and DrainTimeout must be positive"))
	}
	if c.Capacity < 0 {
		errs = append(errs, fmt.Errorf("Capacity %d: need ≥ 0 (0 = unlimited)", c.Capacity))
	}
	for k, v := range c.Labels {
		if !ValidID(k) || (v != "" && !ValidID(v)) {
			errs = append(errs, fmt.Errorf("label %q=%q: keys and values need [A-Za-z0-9._-]", k, v))
		}
	}
	if c.ReconcileBatchDelay < 0 || c.ReconcileBatchDelay > time.Second {
		errs = append(errs, errors.New("ReconcileBatchDelay must be within 0-1s"))
	}
	if c.FailureHold < 0 || c.FailureHold > time.Minute {
		errs = append(errs, errors.New("FailureHold must be within 0-1m"))
	}
	if c.Server {
		if err := c.Voters.Validate(); err != nil {
			errs = append(errs, err)
		}
		rc := c.Raft
		rc.ID, rc.BindAddr = "x", "127.0.0.1:0"
		if err := rc.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
