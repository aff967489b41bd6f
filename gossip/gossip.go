package gossip

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/serf/serf"
)

// serfEventBuffer is the capacity of the channel serf writes member events
// to. The pump drains it without ever blocking, so it only has to absorb
// bursts between two schedules of the pump; it also guarantees that serf's
// internal forwarding goroutine, which sends without watching for shutdown,
// never blocks after the pump has exited.
const serfEventBuffer = 1024

type lifecycle int

const (
	stateNew lifecycle = iota
	stateRunning
	stateClosed
)

// Gossip is one node's membership in the gossip layer. Create it with New,
// then Start it. All methods are safe for concurrent use.
type Gossip struct {
	cfg    Config // defaults applied
	bindIP string // canonical form of cfg.BindAddr
	log    *slog.Logger

	events  chan Event
	dropped atomic.Uint64
	done    chan struct{} // closed when serf stops (or by Close if never started)
	stop    chan struct{} // closed by Close after serf.Shutdown; backstop for the pump
	wg      sync.WaitGroup

	closeOnce sync.Once
	closeErr  error

	// setTagsMu serialises SetTags: serf.SetTags writes serf's config.Tags
	// without a lock, so two concurrent calls would race inside serf.
	setTagsMu sync.Mutex

	// servers holds the members whose role is server, as the member events
	// last reported them (AliveServers reads it rather than copying all of
	// serf's members per call). Written only by the pump.
	servers struct {
		sync.RWMutex
		m map[string]Member
	}

	mu struct {
		sync.Mutex
		state     lifecycle
		tags      Tags // tags to start with; kept current by SetTags
		serf      *serf.Serf
		transport *transport
		leaving   chan struct{} // non-nil once Leave started; closed when serf.Leave returned
		leaveErr  error         // written before leaving is closed
	}
}

// New validates cfg and returns a Gossip that has not started anything.
func New(cfg Config) (*Gossip, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	g := &Gossip{
		cfg:    cfg,
		bindIP: net.ParseIP(cfg.BindAddr).String(),
		log:    cfg.Logger, // the caller's logger already carries the node key
		events: make(chan Event, cfg.EventBuffer),
		done:   make(chan struct{}),
		stop:   make(chan struct{}),
	}
	g.mu.tags = cfg.Tags
	g.servers.m = map[string]Member{}
	return g, nil
}

// Start binds the gossip sockets, creates memberlist and serf and starts the
// event pump. The node is alone until Join. ctx only bounds the start-up
// itself; it does not stop the node later (use Close).
func (g *Gossip) Start(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	switch g.mu.state {
	case stateRunning:
		return ErrAlreadyStarted
	case stateClosed:
		return ErrClosed
	}

	libLog := newStdLogger(g.log)
	nt, err := newNetTransport(g.bindIP, g.cfg.BindPort, libLog)
	if err != nil {
		return fmt.Errorf("gossip: bind %s:%d: %w", g.bindIP, g.cfg.BindPort, err)
	}
	tr := newTransport(nt, g.bindIP, g.cfg.Filter)
	port := tr.port()

	mc := memberlist.DefaultLANConfig()
	mc.BindAddr = g.bindIP
	mc.BindPort = port // also the default port for seeds given without one
	mc.AdvertiseAddr = g.bindIP
	mc.AdvertisePort = port
	mc.Transport = tr
	mc.Logger = libLog
	mc.LogOutput = nil // setting both Logger and LogOutput is an error
	mc.ProbeInterval = g.cfg.ProbeInterval
	mc.ProbeTimeout = g.cfg.ProbeTimeout
	mc.SuspicionMult = g.cfg.SuspicionMult
	mc.GossipInterval = g.cfg.GossipInterval
	mc.PushPullInterval = g.cfg.PushPullInterval
	mc.GossipToTheDeadTime = g.cfg.PushPullInterval
	mc.TCPTimeout = g.cfg.TCPTimeout
	// No LZW on gossip: on a LAN bandwidth is cheap, while memberlist builds
	// a fresh compressor (tables and buffers) for every packet it sends. In
	// the 1,000-member join storm that was a quarter of all CPU plus much of
	// the garbage collection. Receivers still accept compressed packets, so
	// mixed versions interoperate.
	mc.EnableCompression = false
	kr, err := loadKeyring(g.cfg.KeyringFile, g.cfg.EncryptKey)
	if err != nil {
		_ = tr.Shutdown()
		return err
	}
	if kr != nil {
		mc.Keyring = kr
		mc.GossipVerifyIncoming, mc.GossipVerifyOutgoing = true, true
	}

	serfCh := make(chan serf.Event, serfEventBuffer)
	sc := serf.DefaultConfig() // note: panics if os.Hostname fails
	sc.NodeName = g.cfg.NodeName
	sc.Tags = g.mu.tags.Map()
	sc.EventCh = serfCh
	sc.Logger = libLog
	sc.LogOutput = nil
	sc.MemberlistConfig = mc
	sc.ReconnectTimeout = g.cfg.ReconnectTimeout
	sc.TombstoneTimeout = g.cfg.TombstoneTimeout
	sc.ReapInterval = g.cfg.ReapInterval
	sc.ReconnectInterval = g.cfg.ReconnectInterval
	sc.BroadcastTimeout = g.cfg.BroadcastTimeout
	sc.LeavePropagateDelay = g.cfg.LeavePropagateDelay
	sc.CoalescePeriod = 0 // one event per change, as it happens
	sc.UserCoalescePeriod = 0
	sc.EnableNameConflictResolution = true
	if kr != nil {
		sc.KeyringFile = g.cfg.KeyringFile // serf rewrites it on every change
	}

	s, err := serf.Create(sc)
	if err != nil {
		// memberlist does not shut down a transport it was given.
		_ = tr.Shutdown()
		return fmt.Errorf("gossip: start serf: %w", err)
	}
	g.mu.serf = s
	g.mu.transport = tr
	g.mu.state = stateRunning
	g.wg.Add(1)
	go g.pump(s, serfCh)
	g.log.Info("gossip started", "addr", net.JoinHostPort(g.bindIP, strconv.Itoa(port)))
	return nil
}

// runningLocked returns serf if the node is running; g.mu must be held.
func (g *Gossip) runningLocked() (*serf.Serf, error) {
	switch g.mu.state {
	case stateNew:
		return nil, ErrNotStarted
	case stateClosed:
		return nil, ErrClosed
	}
	select {
	case <-g.done:
		return nil, ErrClosed // serf shut itself down (name conflict)
	default:
	}
	return g.mu.serf, nil
}

// pump is the only reader of serf's event channel. It never blocks on the
// consumer.
func (g *Gossip) pump(s *serf.Serf, in <-chan serf.Event) {
	defer g.wg.Done()
	defer close(g.events)
	defer close(g.done)
	for {
		select {
		case e := <-in:
			g.handle(e)
		case <-s.ShutdownCh():
			g.drain(in)
			return
		case <-g.stop: // serf.Shutdown failed without closing ShutdownCh
			g.drain(in)
			return
		}
	}
}

// drain delivers what serf queued before it stopped.
func (g *Gossip) drain(in <-chan serf.Event) {
	for {
		select {
		case e := <-in:
			g.handle(e)
		default:
			g.log.Info("gossip stopped")
			return
		}
	}
}

func (g *Gossip) handle(e serf.Event) {
	me, ok := e.(serf.MemberEvent)
	if !ok {
		return // user events and queries are not used (yet)
	}
	typ, ok := eventTypeFromSerf(me.Type)
	if !ok {
		return
	}
	at := g.cfg.Now()
	for _, m := range me.Members {
		ev := Event{Type: typ, Member: memberFromSerf(m), At: at}
		g.noteServer(ev)
		select {
		case g.events <- ev:
		default:
			n := g.dropped.Add(1)
			g.log.Debug("gossip event dropped: Events channel full",
				"event", typ.String(), "member", m.Name, "dropped", n)
		}
	}
}

// noteServer keeps g.servers current with ev, before ev is handed on: a
// consumer that sees the event also sees its effect in AliveServers.
func (g *Gossip) noteServer(ev Event) {
	g.servers.Lock()
	defer g.servers.Unlock()
	if ev.Type == EventReap || ev.Member.Tags.Role != RoleServer {
		delete(g.servers.m, ev.Member.Name)
		return
	}
	g.servers.m[ev.Member.Name] = ev.Member
}

// Join contacts the seeds (ip:port each) and syncs state with every one it
// reaches. It returns how many it reached, and an error wrapping
// ErrNoSeedReachable if none. When ctx ends first it returns ctx's error; the
// attempt goes on in the background until it finishes or Close.
func (g *Gossip) Join(ctx context.Context, seeds []string) (int, error) {
	if len(seeds) == 0 {
		return 0, fmt.Errorf("%w: no seeds given", ErrNoSeedReachable)
	}
	for _, s := range seeds {
		host, port, err := net.SplitHostPort(s)
		if err != nil || net.ParseIP(host) == nil || port == "" {
			return 0, fmt.Errorf("gossip: join: seed %q is not ip:port", s)
		}
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	type result struct {
		n   int
		err error
	}
	resCh := make(chan result, 1)
	g.mu.Lock()
	s, err := g.runningLocked()
	if err != nil {
		g.mu.Unlock()
		return 0, err
	}
	g.wg.Add(1) // under mu, so Close cannot be in wg.Wait yet
	g.mu.Unlock()
	seeds = slices.Clone(seeds)
	go func() {
		defer g.wg.Done()
		n, err := s.Join(seeds, true)
		resCh <- result{n, err}
	}()
	select {
	case r := <-resCh:
		if r.n == 0 {
			if r.err == nil {
				return 0, ErrNoSeedReachable
			}
			return 0, fmt.Errorf("%w: %w", ErrNoSeedReachable, r.err)
		}
		if r.err != nil {
			return r.n, fmt.Errorf("gossip: join: %w", r.err)
		}
		g.log.Info("gossip joined", "seeds", strings.Join(seeds, ","), "reached", r.n)
		return r.n, nil
	case <-ctx.Done():
		return 0, fmt.Errorf("gossip: join: %w", ctx.Err())
	}
}

// Members returns every member serf knows, this node included, sorted by
// name. Failed and left members stay until reaped. After Close it returns
// the last view.
func (g *Gossip) Members() []Member {
	g.mu.Lock()
	s := g.mu.serf
	g.mu.Unlock()
	if s == nil {
		return nil
	}
	sm := s.Members()
	out := make([]Member, 0, len(sm))
	for _, m := range sm {
		out = append(out, memberFromSerf(m))
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Member returns the member called name, if serf knows it.
func (g *Gossip) Member(name string) (Member, bool) {
	g.mu.Lock()
	s := g.mu.serf
	g.mu.Unlock()
	if s == nil {
		if name == g.cfg.NodeName {
			return g.LocalMember(), true
		}
		return Member{}, false
	}
	for _, m := range s.Members() {
		if m.Name == name {
			return memberFromSerf(m), true
		}
	}
	return Member{}, false
}

// LocalMember returns this node as the cluster sees it. Before Start its
// Status is StatusUnknown and its port is the configured one (possibly 0).
func (g *Gossip) LocalMember() Member {
	g.mu.Lock()
	s, tags := g.mu.serf, g.mu.tags
	g.mu.Unlock()
	if s == nil {
		return Member{
			Name:   g.cfg.NodeName,
			Addr:   net.JoinHostPort(g.bindIP, strconv.Itoa(g.cfg.BindPort)),
			Tags:   tags,
			Status: StatusUnknown,
		}
	}
	return memberFromSerf(s.LocalMember())
}

// AliveServers returns the alive members whose role is RoleServer, sorted
// by name, as of the last member event processed (a server that announced
// its leave still counts until the leave itself is reported). Clients call
// it for every request they send to a server, so it reads a set kept
// current from the events, of the size of the server set: copying serf's
// thousand members per call was ~10% of the CPU of a 1,000-member
// in-process fleet.
func (g *Gossip) AliveServers() []Member {
	g.servers.RLock()
	out := make([]Member, 0, len(g.servers.m))
	for _, m := range g.servers.m {
		if m.Status == StatusAlive {
			out = append(out, m)
		}
	}
	g.servers.RUnlock()
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// SetTags replaces this node's tags. Before Start it only changes what Start
// will advertise; afterwards it broadcasts them (waiting up to
// Config.BroadcastTimeout) and the other members get EventUpdate.
func (g *Gossip) SetTags(t Tags) error {
	c := g.cfg
	c.Tags = t
	if err := c.Validate(); err != nil {
		return err
	}
	g.setTagsMu.Lock()
	defer g.setTagsMu.Unlock()
	g.mu.Lock()
	if g.mu.state == stateNew {
		g.mu.tags = t
		g.mu.Unlock()
		return nil
	}
	s, err := g.runningLocked()
	if err == nil {
		g.mu.tags = t
	}
	g.mu.Unlock()
	if err != nil {
		return err
	}
	if err := s.SetTags(t.Map()); err != nil {
		return fmt.Errorf("gossip: set tags: %w", err)
	}
	return nil
}

// Events returns the channel of member events. It is closed after Done.
// Events that find it full are dropped and counted in DroppedEvents.
func (g *Gossip) Events() <-chan Event { return g.events }

// DroppedEvents is the number of events discarded because Events was full.
func (g *Gossip) DroppedEvents() uint64 { return g.dropped.Load() }

// Done is closed when serf has shut down, for any reason: Close, or serf
// shutting itself down after losing a node-name conflict.
func (g *Gossip) Done() <-chan struct{} { return g.done }

// Leave announces a graceful departure: the other members will report this
// node as left rather than failed. The node keeps running (answering probes
// for LeavePropagateDelay) until Close; call Close next. Leave returns ctx's
// error if ctx ends first; the leave then completes in the background (at
// most 2×BroadcastTimeout + LeavePropagateDelay) and Close waits for it.
// Calling Leave again joins the first attempt.
func (g *Gossip) Leave(ctx context.Context) error {
	g.mu.Lock()
	if g.mu.leaving == nil || g.mu.state == stateClosed {
		if _, err := g.runningLocked(); err != nil {
			g.mu.Unlock()
			return err
		}
	}
	if g.mu.leaving == nil {
		s := g.mu.serf
		ch := make(chan struct{})
		g.mu.leaving = ch
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			err := s.Leave()
			g.mu.Lock()
			g.mu.leaveErr = err
			g.mu.Unlock()
			close(ch)
		}()
	}
	leaving := g.mu.leaving
	g.mu.Unlock()

	select {
	case <-leaving:
		g.mu.Lock()
		err := g.mu.leaveErr
		g.mu.Unlock()
		if err != nil {
			return fmt.Errorf("gossip: leave: %w", err)
		}
		g.log.Info("gossip left")
		return nil
	case <-ctx.Done():
		return fmt.Errorf("gossip: leave: %w", ctx.Err())
	}
}

// Close shuts serf and memberlist down without a leave (to the others it
// looks like a crash unless Leave ran first) and waits for every goroutine
// this package started. It is idempotent and safe to call before Start.
func (g *Gossip) Close() error {
	g.closeOnce.Do(func() { g.closeErr = g.close() })
	return g.closeErr
}

func (g *Gossip) close() error {
	g.mu.Lock()
	prev := g.mu.state
	g.mu.state = stateClosed
	s, leaving := g.mu.serf, g.mu.leaving
	g.mu.Unlock()

	if prev == stateNew {
		close(g.done)
		close(g.events)
		return nil
	}
	// memberlist panics ("leave after shutdown") if Shutdown lands in the
	// middle of serf.Leave: let a running Leave finish first. It is bounded
	// by 2×BroadcastTimeout + LeavePropagateDelay.
	if leaving != nil {
		<-leaving
	}
	err := s.Shutdown() // also shuts the transport down, ending in-flight dials
	close(g.stop)
	g.wg.Wait()
	if err != nil {
		return fmt.Errorf("gossip: shutdown: %w", err)
	}
	return nil
}
