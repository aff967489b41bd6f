package gossip

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/kelpie/cluster/internal/netx"
)

// errTransportShutdown is returned by dials after Shutdown.
var errTransportShutdown = errors.New("gossip: transport shut down")

// transport wraps netTransport (memberlist's NetTransport, allocating less)
// so that
//
//   - every outgoing TCP stream is dialed from the node's own bind IP
//     (netx.Dialer); UDP already leaves from the socket bound to it;
//   - an optional netx.Filter applies to every packet and stream in both
//     directions: outgoing packets to a cut destination are silently
//     dropped, incoming packets from a cut source are discarded, dials to a
//     cut destination black-hole until their timeout and accepted streams
//     from a cut source are closed (or cut mid-stream by netx.WrapConn);
//   - Shutdown also closes the streams this node dialed, so that a Join or
//     push/pull in flight ends at once instead of after TCPTimeout.
//
// With no Filter, PacketCh and StreamCh are the inner transport's channels
// and no goroutine of ours is involved.
type transport struct {
	inner  *netTransport
	bindIP string
	filter netx.Filter
	dialer netx.Dialer

	packetCh chan *memberlist.Packet // used only with a filter
	streamCh chan net.Conn           // used only with a filter

	ctx       context.Context // ends at Shutdown; parent of every dial
	cancel    context.CancelFunc
	stop      chan struct{} // closed when Shutdown starts
	innerDone chan struct{} // closed once inner.Shutdown has returned
	wg        sync.WaitGroup
	once      sync.Once

	mu struct {
		sync.Mutex
		closed bool
		conns  map[*trackedConn]struct{}
	}
}

var _ memberlist.NodeAwareTransport = (*transport)(nil)

// newTransport wraps inner; bindIP is the canonical (net.IP.String) form of
// the address inner is bound to. filter may be nil.
func newTransport(inner *netTransport, bindIP string, filter netx.Filter) *transport {
	t := &transport{
		inner:     inner,
		bindIP:    bindIP,
		filter:    filter,
		dialer:    netx.Dialer{SourceIP: bindIP, Filter: filter},
		stop:      make(chan struct{}),
		innerDone: make(chan struct{}),
	}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	t.mu.conns = make(map[*trackedConn]struct{})
	if filter != nil {
		t.packetCh = make(chan *memberlist.Packet)
		t.streamCh = make(chan net.Conn)
		t.wg.Add(2)
		go t.forwardPackets()
		go t.forwardStreams()
	}
	return t
}

// port is the port the transport is bound to (the kernel's choice when the
// configured port was 0).
func (t *transport) port() int { return t.inner.GetAutoBindPort() }

// FinalAdvertiseAddr implements memberlist.Transport.
func (t *transport) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	return t.inner.FinalAdvertiseAddr(ip, port)
}

// WriteTo implements memberlist.Transport.
func (t *transport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: addr})
}

// WriteToAddress implements memberlist.NodeAwareTransport. A packet the
// filter cuts is dropped while reporting success, as a lossy network would.
func (t *transport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	if t.filter != nil && !t.filter.Allow(t.bindIP, hostIP(a.Addr)) {
		// time.Now, not Config.Now: memberlist compares it with the
		// wall-clock receive timestamps of acks to measure RTT.
		return time.Now(), nil
	}
	return t.inner.WriteToAddress(b, a)
}

// PacketCh implements memberlist.Transport.
func (t *transport) PacketCh() <-chan *memberlist.Packet {
	if t.filter == nil {
		return t.inner.PacketCh()
	}
	return t.packetCh
}

// DialTimeout implements memberlist.Transport.
func (t *transport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

// DialAddressTimeout implements memberlist.NodeAwareTransport: it dials from
// the bind IP, through the filter, and ends early on Shutdown.
func (t *transport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(t.ctx, timeout)
	defer cancel()
	c, err := t.dialer.DialContext(ctx, "tcp", a.Addr)
	if err != nil {
		if t.ctx.Err() != nil {
			return nil, errTransportShutdown
		}
		return nil, err
	}
	tc := &trackedConn{Conn: c, t: t}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.mu.closed {
		_ = c.Close()
		return nil, errTransportShutdown
	}
	t.mu.conns[tc] = struct{}{}
	return tc, nil
}

// StreamCh implements memberlist.Transport.
func (t *transport) StreamCh() <-chan net.Conn {
	if t.filter == nil {
		return t.inner.StreamCh()
	}
	return t.streamCh
}

// Shutdown implements memberlist.Transport. It is idempotent. memberlist
// calls it before it stops reading PacketCh/StreamCh; the forwarders keep
// draining the inner channels until inner.Shutdown has returned (which
// memberlist's own NetTransport needed: its listeners block on unbuffered
// sends; netTransport's give up when it shuts down).
func (t *transport) Shutdown() error {
	var err error
	t.once.Do(func() {
		close(t.stop)
		t.cancel()
		t.mu.Lock()
		t.mu.closed = true
		conns := t.mu.conns
		t.mu.conns = nil
		t.mu.Unlock()
		for c := range conns {
			_ = c.Conn.Close()
		}
		err = t.inner.Shutdown()
		close(t.innerDone)
		t.wg.Wait()
	})
	return err
}

func (t *transport) forwardPackets() {
	defer t.wg.Done()
	in := t.inner.PacketCh()
	for {
		select {
		case p := <-in:
			if !t.filter.Allow(netx.HostIP(p.From), t.bindIP) {
				continue
			}
			select {
			case t.packetCh <- p:
			case <-t.stop: // shutting down: drop it
			}
		case <-t.innerDone:
			return
		}
	}
}

func (t *transport) forwardStreams() {
	defer t.wg.Done()
	in := t.inner.StreamCh()
	for {
		select {
		case c := <-in:
			if !t.filter.Allow(netx.HostIP(c.RemoteAddr()), t.bindIP) {
				_ = c.Close() // the SYN would never have arrived
				continue
			}
			select {
			case t.streamCh <- netx.WrapConn(c, t.filter):
			case <-t.stop:
				_ = c.Close()
			}
		case <-t.innerDone:
			return
		}
	}
}

func (t *transport) forget(c *trackedConn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.mu.conns, c) // no-op on the nil map after Shutdown
}

// trackedConn is a dialed stream that Shutdown closes if it is still open.
type trackedConn struct {
	net.Conn
	t    *transport
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() { c.t.forget(c) })
	return c.Conn.Close()
}

// hostIP returns the canonical IP string of a host:port address, or the
// host part unchanged when it is not an IP literal.
func hostIP(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if ip := net.ParseIP(host); ip != nil {
		return ip.String()
	}
	return host
}
