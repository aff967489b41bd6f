package cluster

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kelpie/cluster/consensus"
	"github.com/kelpie/cluster/gossip"
	"github.com/kelpie/cluster/internal/logx"
	"github.com/kelpie/cluster/internal/netx"
	"github.com/kelpie/cluster/metrics"
	"github.com/kelpie/cluster/migration"
)

// Node is one member of a kelpie cluster: it gossips, and as a server it runs
// Raft and (when leader) turns gossip suggestions into committed view
// changes. New starts nothing; Start starts every goroutine; Close stops them
// all and is idempotent.
type Node struct {
	cfg    Config
	host   Host
	logger *slog.Logger
	boot   string // this process incarnation

	gossip  *gossip.Gossip
	raft    *consensus.Server // servers only
	fsm     *consensus.FSM    // servers only
	voters  *consensus.VoterManager
	replica *viewBox // clients: the view followed from servers
	pub     *viewBox // the view this node serves (never goes backwards)
	metrics *metrics.Metrics
	reg     *prometheus.Registry

	peerHTTP *http.Client // node-to-node HTTP, bound to BindAddr
	dialer   *netx.Dialer // node-to-node TCP, bound to BindAddr
	tls      *tlsState    // nil without TLS
	httpLn   net.Listener
	httpSrv  *http.Server

	events      chan ViewEvent
	reconcileCh chan struct{}
	left        chan struct{} // closed after an operator-requested leave (LeftCh)
	leftOnce    sync.Once

	lease    *holderLease    // this node's membership lease
	leases   *leaderLeases   // grants, while leader
	verifier *leaderVerifier // coalesced VerifyLeader
	gate     *leaderGate     // opens once a leader's FSM reflects every earlier term
	actors   *localActors    // actors activated here
	pcache   *placementCache // placements looked up or made here
	placeCh  chan placeReq   // the leader's group-commit queue (servers only)
	coord    *migration.Coordinator
	draining drainSet // nodes the leader is draining

	// testCorruptTransfer, if set, corrupts the migration frames this node
	// sends for the actors it selects (fault-injection tests only).
	testCorruptTransfer func(actor string) bool

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu struct {
		sync.Mutex
		started, closed bool
		bootstrapped    bool
		caughtUp        bool      // servers: FSM has applied everything on disk at start
		startIndex      uint64    // servers: last log index at start
		gossipStart     time.Time // when gossip started (grace for missing members)
		leaderSince     time.Time // when this node last became leader (zero if not)
		lastFollowErr   error
	}
}

// peerConnectTimeout bounds connection set-up to another node (LAN).
const peerConnectTimeout = time.Second

// ViewEvent is delivered on Events() for every committed view change this
// node observes.
type ViewEvent struct {
	View consensus.View
}

// New validates cfg and builds a node. It starts nothing. host may be nil for
// a node that hosts no actors.
func New(cfg Config, host Host) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidArgument, err)
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("node", cfg.NodeID)
	reg := cfg.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("cluster: boot id: %w", err)
	}
	n := &Node{
		cfg:         cfg,
		host:        host,
		logger:      logger,
		boot:        hex.EncodeToString(b[:]),
		pub:         newViewBox(),
		reg:         reg,
		events:      make(chan ViewEvent, 64),
		reconcileCh: make(chan struct{}, 1),
		left:        make(chan struct{}),
		lease:       newHolderLease(),
		leases:      &leaderLeases{},
		gate:        newLeaderGate(),
		pcache:      newPlacementCache(100_000),
	}
	if cfg.Server {
		// Only a leader places; the queue is 1 MiB, which a fleet of
		// clients would otherwise each carry for nothing.
		n.placeCh = make(chan placeReq, 4*consensus.MaxBatchItems)
		// Clients follow servers' views by deltas (viewdelta.go).
		n.pub = newViewBoxWithHistory(viewHistory)
	}
	n.actors = newLocalActors(host, logger)
	n.verifier = &leaderVerifier{fn: func(ctx context.Context) error {
		if n.raft == nil {
			return ErrNotServer
		}
		return n.raft.VerifyLeader(ctx)
	}}
	dialer := &netx.Dialer{SourceIP: cfg.BindAddr, Filter: cfg.Filter}
	n.dialer = dialer
	tr := &http.Transport{
		// Connecting is bounded on its own: an unreachable peer fails fast
		// as "not sent" (so forwarding may retry or report no quorum)
		// instead of using up the whole request deadline.
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			ctx, cancel := context.WithTimeout(ctx, peerConnectTimeout)
			defer cancel()
			return dialer.DialContext(ctx, network, addr)
		},
		// Bursts of forwarded requests (a client fleet placing at once)
		// reuse connections instead of opening and closing hundreds.
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     30 * time.Second,
	}
	if cfg.TLS.Enabled() {
		st, err := newTLSState(cfg.TLS)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalidArgument, err)
		}
		n.tls = st
		tr.TLSClientConfig = st.clientConfig()
	}
	n.peerHTTP = &http.Client{Transport: tr}
	mc := cfg.Migration
	mc.Logger = logger
	coord, err := migration.New(mc, migLog{n}, migMover{n})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidArgument, err)
	}
	n.coord = coord
	m, err := metrics.New(reg, n)
	if err != nil {
		return nil, err
	}
	n.metrics = m
	return n, nil
}

// Start binds the listeners and starts gossip, Raft (servers) and the
// background loops. It returns once everything is listening; use Join to
// become a member.
func (n *Node) Start(ctx context.Context) (err error) {
	n.mu.Lock()
	if n.mu.closed {
		n.mu.Unlock()
		return ErrClosed
	}
	if n.mu.started {
		n.mu.Unlock()
		return errors.New("cluster: already started")
	}
	n.mu.started = true
	n.mu.Unlock()
	n.ctx, n.cancel = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			n.shutdown()
		}
	}()

	if n.cfg.DataDir != "" {
		if err := os.MkdirAll(n.cfg.DataDir, 0o700); err != nil {
			return fmt.Errorf("cluster: data dir: %w", err)
		}
	}
	ip := n.cfg.BindAddr
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(n.cfg.HTTPPort)))
	if err != nil {
		return fmt.Errorf("cluster: listen http: %w", err)
	}
	n.httpLn = netx.Listener(ln, n.cfg.Filter)
	if n.tls != nil {
		n.httpLn = tls.NewListener(n.httpLn, n.tls.serverConfig(false))
	}
	n.httpSrv = &http.Server{
		Handler:           n.withACL(n.requireClientCert(n.routes())),
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          log.New(&logx.StdWriter{L: n.logger.With("component", "http")}, "", 0),
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}

	if n.cfg.Server {
		rc := n.cfg.Raft
		rc.ID = n.cfg.NodeID
		rc.BindAddr = net.JoinHostPort(ip, strconv.Itoa(n.cfg.RaftPort))
		rc.DataDir = n.cfg.DataDir
		rc.Filter = n.cfg.Filter
		rc.Logger = n.logger
		if n.tls != nil {
			rc.TLSServer, rc.TLSClient = n.tls.serverConfig(true), n.tls.clientConfig()
		}
		n.fsm = consensus.NewFSM()
		if n.raft, err = consensus.NewServer(rc, n.fsm); err != nil {
			return err
		}
		if err := n.raft.Start(); err != nil {
			return err
		}
		n.mu.Lock()
		n.mu.startIndex = n.raft.Stats().LastLogIndex
		n.mu.Unlock()
		if n.voters, err = consensus.NewVoterManager(n.raft, n, n.cfg.Voters); err != nil {
			return err
		}
	} else {
		n.replica = newViewBox()
	}

	gc := n.cfg.Gossip
	gc.NodeName = n.cfg.NodeID
	gc.BindAddr = ip
	gc.BindPort = n.cfg.GossipPort
	gc.Filter = n.cfg.Filter
	gc.Logger = n.logger
	gc.Tags = n.tags()
	gc.EncryptKey = n.cfg.EncryptKey
	if n.cfg.DataDir != "" {
		gc.KeyringFile = filepath.Join(n.cfg.DataDir, "serf", "keyring")
	}
	if n.gossip, err = gossip.New(gc); err != nil {
		return err
	}
	if err := n.gossip.Start(ctx); err != nil {
		return err
	}
	n.mu.Lock()
	n.mu.gossipStart = time.Now()
	n.mu.Unlock()

	n.goLoop(func() {
		if err := n.httpSrv.Serve(n.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.logger.Error("http server stopped", "err", err)
		}
	})
	n.goLoop(n.pumpGossip)
	n.goLoop(n.publishLoop)
	n.goLoop(n.renewLoop)
	n.goLoop(n.fenceLoop)
	if n.cfg.Server {
		n.goLoop(n.leadershipLoop)
		if n.cfg.BootstrapExpect > 0 {
			n.goLoop(n.bootstrapLoop)
		}
	} else {
		n.goLoop(n.followLoop)
	}
	n.logger.Info("node started", "role", n.role(), "http", n.HTTPAddr(), "gossip", n.GossipAddr(), "raft", n.RaftAddr(), "boot", n.boot)
	return nil
}

func (n *Node) goLoop(f func()) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		f()
	}()
}

func (n *Node) role() consensus.Role {
	if n.cfg.Server {
		return consensus.RoleServer
	}
	return consensus.RoleClient
}

func (n *Node) tags() gossip.Tags {
	t := gossip.Tags{
		Role:     string(n.role()),
		HTTPAddr: n.HTTPAddr(),
		Zone:     n.cfg.Zone,
		Version:  n.cfg.Version,
		Boot:     n.boot,
		Labels:   formatLabels(n.cfg.Labels),
	}
	if n.cfg.Capacity > 0 {
		t.Capacity = strconv.Itoa(n.cfg.Capacity)
	}
	if n.cfg.Server {
		t.RaftAddr = n.raft.Addr()
		if n.cfg.BootstrapExpect > 0 {
			t.Expect = strconv.Itoa(n.cfg.BootstrapExpect)
		}
	}
	return t
}

// ID is the node ID.
func (n *Node) ID() string { return n.cfg.NodeID }

// Boot is this process incarnation's random ID.
func (n *Node) Boot() string { return n.boot }

// IsServer reports whether the node runs Raft.
func (n *Node) IsServer() bool { return n.cfg.Server }

// HTTPAddr is the bound HTTP API address (ip:port), after Start.
func (n *Node) HTTPAddr() string {
	if n.httpLn == nil {
		return ""
	}
	return n.httpLn.Addr().String()
}

// GossipAddr is the bound gossip address (ip:port), after Start.
func (n *Node) GossipAddr() string {
	if n.gossip == nil {
		return ""
	}
	return n.gossip.LocalMember().Addr
}

// RaftAddr is the Raft address (servers), after Start.
func (n *Node) RaftAddr() string {
	if n.raft == nil {
		return ""
	}
	return n.raft.Addr()
}

// Registry is the Prometheus registry holding this node's metrics.
func (n *Node) Registry() *prometheus.Registry { return n.reg }

// Events delivers committed view changes as this node observes them. If the
// consumer falls behind, events are dropped (View always has the latest).
func (n *Node) Events() <-chan ViewEvent { return n.events }

// View returns the committed view this node currently serves. It never goes
// backwards. Before the node has caught up after a start, it is empty.
func (n *Node) View() consensus.View {
	v, _, _ := n.pub.get()
	return v
}

// Self returns this node's record in the served view.
func (n *Node) Self() (consensus.Member, bool) {
	return n.View().Member(n.cfg.NodeID)
}

// Close stops everything without leaving gracefully (peers will see this
// node fail). Use Leave first for a graceful exit. Idempotent.
func (n *Node) Close() error {
	n.mu.Lock()
	if n.mu.closed {
		n.mu.Unlock()
		return nil
	}
	n.mu.closed = true
	started := n.mu.started
	n.mu.Unlock()
	if !started {
		return nil
	}
	return n.shutdown()
}

func (n *Node) shutdown() error {
	n.mu.Lock()
	n.mu.closed = true
	n.mu.Unlock()
	if n.cancel != nil {
		n.cancel()
	}
	var errs []error
	if n.httpSrv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		if err := n.httpSrv.Shutdown(ctx); err != nil {
			n.httpSrv.Close()
		}
		cancel()
	} else if n.httpLn != nil {
		n.httpLn.Close()
	}
	if n.gossip != nil {
		errs = append(errs, n.gossip.Close())
	}
	n.wg.Wait()
	n.actors.deactivateAll(context.Background(), "node closing")
	if n.raft != nil {
		errs = append(errs, n.raft.Shutdown())
	}
	if t, ok := n.peerHTTP.Transport.(*http.Transport); ok {
		t.CloseIdleConnections()
	}
	n.logger.Info("node stopped")
	return errors.Join(errs...)
}

func (n *Node) closed() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.mu.closed
}
