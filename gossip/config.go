package gossip

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/kelpie/cluster/internal/netx"
)

// Config configures one gossip node. Build it from DefaultConfig (or
// TestConfig) and override fields; Validate checks it without changing it.
//
// Failure detection: a member that stops answering is suspected after a
// failed probe (ProbeTimeout, then indirect probes through up to 3 other
// members and a TCP fallback within ProbeInterval) and declared failed when
// the suspicion timer runs out without a refutation. The suspicion timeout is
//
//	min = SuspicionMult × max(1, log10(N)) × ProbeInterval, max = 6 × min
//
// shrinking from max towards min as other members independently confirm the
// suspicion (Lifeguard); with fewer than SuspicionMult−2 possible confirmers
// it is simply min. Every member is probed about once per N×ProbeInterval in
// a round-robin, so worst-case detection is roughly
// N×ProbeInterval + min-suspicion, and typical detection in a small cluster is
// ProbeInterval + min-suspicion.
type Config struct {
	// NodeName is the unique name of this node in the cluster. Required.
	// A second node claiming the same name triggers serf's name-conflict
	// resolution, which shuts down the loser (see Gossip.Done).
	NodeName string

	// BindAddr is the IP address to bind (UDP and TCP) and to advertise; it
	// is also the source address of every outgoing packet and connection.
	// Required; must be a concrete IP (0.0.0.0 / :: are rejected because the
	// fault-injection suite tells nodes apart by source IP).
	BindAddr string

	// BindPort is the gossip port (UDP and TCP). 0 picks a free port; read
	// it back from LocalMember().Addr after Start. Range 0..65535.
	BindPort int

	// Tags is what this node advertises (role, HTTP/Raft addresses, zone,
	// version). Role must be RoleServer or RoleClient.
	Tags Tags

	// ProbeInterval is the time between failure-detector probes of one
	// random member (round-robin). Lower detects failures sooner at the cost
	// of more packets (one probe per node per interval, independent of N).
	// Must be > ProbeTimeout.
	ProbeInterval time.Duration

	// ProbeTimeout is how long to wait for the direct ack before probing
	// indirectly. It must cover the network RTT plus scheduling and GC
	// pauses of the peer; too low produces false suspicions (Lifeguard's
	// awareness then backs the probe rate off, up to 8×).
	ProbeTimeout time.Duration

	// SuspicionMult scales the suspicion timeout (see the Config doc).
	// Higher gives a suspected but alive member more time to refute before
	// being declared failed. Range >= 1.
	SuspicionMult int

	// GossipInterval is the time between gossip rounds (piggybacked
	// broadcasts sent to 3 random members). Lower spreads news faster at the
	// cost of more packets.
	GossipInterval time.Duration

	// PushPullInterval is the time between full state syncs over TCP with
	// one random member (anti-entropy; scaled up by memberlist for clusters
	// above 32 nodes). It repairs anything gossip lost. Also used as the
	// time memberlist keeps gossiping to dead members.
	PushPullInterval time.Duration

	// TCPTimeout bounds one stream operation (join, push/pull, TCP fallback
	// probe), including the dial. Join tries seeds one after another, so a
	// Join with k dead seeds can take k × TCPTimeout (or until its ctx ends).
	TCPTimeout time.Duration

	// ReconnectTimeout is how long a failed member is remembered (shown as
	// failed in Members, and retried every ReconnectInterval) before it is
	// reaped with EventReap. serf's default is 24 h.
	ReconnectTimeout time.Duration

	// TombstoneTimeout is how long a member that left gracefully is
	// remembered (shown as left) before it is reaped. It must comfortably
	// exceed the time a leave needs to reach every member, so that stale
	// gossip cannot resurrect the node. serf's default is 24 h.
	TombstoneTimeout time.Duration

	// ReapInterval is how often failed and left members are checked against
	// ReconnectTimeout / TombstoneTimeout: reaping happens up to this much
	// later than the timeouts say.
	ReapInterval time.Duration

	// ReconnectInterval is how often serf tries to re-join one random failed
	// member. This is what heals a partition without an explicit Join.
	ReconnectInterval time.Duration

	// BroadcastTimeout bounds how long Leave and SetTags wait for their
	// broadcast to be sent out (Leave waits for it twice: serf's leave intent
	// and memberlist's dead message).
	BroadcastTimeout time.Duration

	// LeavePropagateDelay is how long Leave keeps the node answering probes
	// after broadcasting the leave, so that members that have not heard the
	// leave yet do not mark it failed instead. Range >= 0.
	LeavePropagateDelay time.Duration

	// EventBuffer is the capacity of the Events channel. Events that find it
	// full are dropped and counted (DroppedEvents). Range >= 1.
	EventBuffer int

	// Filter, if set, cuts links in-process (tests only): see netx.Filter.
	Filter netx.Filter

	// EncryptKey is the initial base64 AES-GCM key (16, 24 or 32 bytes);
	// empty means no encryption unless KeyringFile exists. KeyringFile is
	// where the keyring is persisted (0600): loaded at start when it
	// exists, written by serf on every rotation.
	EncryptKey  string
	KeyringFile string

	// Logger receives serf and memberlist logs (their "[LEVEL]" prefixes
	// become slog levels) and our own. The caller adds identifying keys such as "node". nil means
	// slog.Default().
	Logger *slog.Logger

	// Now is the clock used to stamp Event.At. nil means time.Now.
	Now func() time.Time
}

// DefaultConfig returns the LAN profile: the memberlist LAN defaults for the
// failure detector (tuned for sub-millisecond RTTs and well-tested at scale)
// and deliberate, much shorter than serf's, reap timeouts. NodeName and
// BindAddr must still be set.
func DefaultConfig() Config {
	return Config{
		BindPort: 7946,                   // serf/memberlist's well-known port
		Tags:     Tags{Role: RoleClient}, // fleet members are clients unless told otherwise

		// Three probes per second per node: still a constant, tiny load per
		// node whatever the cluster size (a probe is one UDP round trip),
		// and a dead member of a small cluster is probed within ~1 s.
		// memberlist's LAN profile (1 s / 500 ms / 4) detects a crash in
		// 5-8 s at 5 nodes and up to ~26 s when confirmations are missing;
		// this profile's measured figures are in BENCHMARKS.md.
		ProbeInterval: 300 * time.Millisecond,
		// LAN RTT is far below 1 ms; 150 ms still absorbs a scheduler
		// hiccup, and a missed direct ack only triggers indirect probes and
		// a TCP fallback, not a suspicion.
		ProbeTimeout: 150 * time.Millisecond,
		// Suspicion lasts 1.5 s (N < 10; × log10 N above) once every
		// possible confirmer (SuspicionMult−2 = 3) agrees, up to 9 s when
		// nobody confirms (Lifeguard). A process paused for 1 s (GC,
		// SIGSTOP, a VM hiccup) is suspected at the earliest one
		// ProbeInterval into the pause and has until 1.8 s to refute, so it
		// is not declared failed. Gossip only suggests; the committed view
		// and the 4 s membership lease carry safety.
		SuspicionMult: 5,
		// 200 ms gossip rounds spread an event to a 100-node cluster in
		// well under a second.
		GossipInterval: 200 * time.Millisecond,
		// Full state sync every 30 s per node repairs lost gossip cheaply.
		PushPullInterval: 30 * time.Second,
		// memberlist's LAN value: a push/pull of a few thousand members fits
		// in it, and it is long enough not to fail joins on a busy seed.
		TCPTimeout: 10 * time.Second,
		// 30 min instead of 24 h: the Raft view, not gossip, is the
		// authoritative memory of who was a member. 30 min covers restarts,
		// reboots and network blips (serf keeps reconnecting meanwhile), yet
		// a fleet that churns thousands of clients a day does not drag a
		// day's worth of dead members through every push/pull.
		ReconnectTimeout: 30 * time.Minute,
		// A leave spreads in seconds; 30 min is a wide margin against stale
		// gossip resurrecting a node, for the same memory cost as above.
		TombstoneTimeout: 30 * time.Minute,
		// serf's default: reaping is housekeeping, precision is not needed.
		ReapInterval: 15 * time.Second,
		// 10 s instead of serf's 30 s: this is what heals a partition without
		// operator action, and convergence (G9) wants it bounded and short.
		// Cost: at most one TCP join attempt per interval per node, and only
		// while failed members exist.
		ReconnectInterval: 10 * time.Second,
		// serf's default; only Leave and SetTags wait on it.
		BroadcastTimeout: 5 * time.Second,
		// serf's default: about 5 gossip rounds to answer probes from
		// members that have not heard the leave yet.
		LeavePropagateDelay: 1 * time.Second,
		// Absorbs a 1,000-node join storm between two reads of the
		// consumer; anything beyond is dropped, counted and repaired by the
		// periodic reconcile.
		EventBuffer: 1024,
	}
}

// TestConfig returns a fast profile for in-process tests on loopback:
// failures are detected in about a second, leaves propagate in ~100 ms and
// failed/left members are reaped after ~5 s. It is far too twitchy for a
// real network. NodeName and BindAddr must still be set; BindPort is 0.
func TestConfig() Config {
	c := DefaultConfig()
	c.BindPort = 0
	c.ProbeInterval = 200 * time.Millisecond
	c.ProbeTimeout = 100 * time.Millisecond
	c.SuspicionMult = 3 // min suspicion 600 ms
	c.GossipInterval = 50 * time.Millisecond
	c.PushPullInterval = 2 * time.Second
	c.TCPTimeout = 2 * time.Second
	c.ReconnectTimeout = 5 * time.Second
	c.TombstoneTimeout = 5 * time.Second
	c.ReapInterval = 1 * time.Second
	c.ReconnectInterval = 500 * time.Millisecond
	c.BroadcastTimeout = 2 * time.Second
	c.LeavePropagateDelay = 100 * time.Millisecond
	c.EventBuffer = 256
	return c
}

// Validate reports every problem in c, wrapped in ErrInvalidConfig. It does
// not change c.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf(format, args...))
	}
	if c.NodeName == "" {
		bad("NodeName is required")
	}
	if c.BindAddr == "" {
		bad("BindAddr is required")
	} else if ip := net.ParseIP(c.BindAddr); ip == nil {
		bad("BindAddr %q is not an IP address", c.BindAddr)
	} else if ip.IsUnspecified() {
		bad("BindAddr %q must be a concrete IP, not the unspecified address", c.BindAddr)
	}
	if c.BindPort < 0 || c.BindPort > 65535 {
		bad("BindPort %d out of range 0..65535", c.BindPort)
	}
	if c.Tags.Role != RoleServer && c.Tags.Role != RoleClient {
		bad("Tags.Role %q must be %q or %q", c.Tags.Role, RoleServer, RoleClient)
	}
	if n := c.Tags.encodedSizeBound(); n > memberlist.MetaMaxSize {
		bad("Tags too large: up to %d bytes encoded, limit %d", n, memberlist.MetaMaxSize)
	}
	positive := func(name string, d time.Duration) {
		if d <= 0 {
			bad("%s must be > 0, got %v", name, d)
		}
	}
	positive("ProbeInterval", c.ProbeInterval)
	positive("ProbeTimeout", c.ProbeTimeout)
	if c.ProbeTimeout > 0 && c.ProbeInterval > 0 && c.ProbeTimeout >= c.ProbeInterval {
		bad("ProbeTimeout %v must be < ProbeInterval %v", c.ProbeTimeout, c.ProbeInterval)
	}
	if c.SuspicionMult < 1 {
		bad("SuspicionMult must be >= 1, got %d", c.SuspicionMult)
	}
	positive("GossipInterval", c.GossipInterval)
	positive("PushPullInterval", c.PushPullInterval)
	positive("TCPTimeout", c.TCPTimeout)
	positive("ReconnectTimeout", c.ReconnectTimeout)
	positive("TombstoneTimeout", c.TombstoneTimeout)
	positive("ReapInterval", c.ReapInterval)
	positive("ReconnectInterval", c.ReconnectInterval)
	positive("BroadcastTimeout", c.BroadcastTimeout)
	if c.LeavePropagateDelay < 0 {
		bad("LeavePropagateDelay must be >= 0, got %v", c.LeavePropagateDelay)
	}
	if c.EventBuffer < 1 {
		bad("EventBuffer must be >= 1, got %d", c.EventBuffer)
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrInvalidConfig, errors.Join(errs...))
}

// withDefaults returns c with nil collaborators replaced by their defaults.
func (c Config) withDefaults() Config {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}
