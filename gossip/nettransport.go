package gossip

import (
	"errors"
	"fmt"
	"log"
	"net"
	"sync"
	"sync/atomic"
	"time"

	metrics "github.com/hashicorp/go-metrics"
	"github.com/hashicorp/memberlist"
)

// netTransport is memberlist's NetTransport (one TCP listener and one UDP
// socket on the same port) with one difference: a received packet is read
// into a buffer reused across reads and handed on as an exact-size copy.
// NetTransport allocates (and zeroes) a fresh 64 KiB buffer for every
// packet, however small: half of all the bytes allocated by a 500-member
// in-process join storm, and with it most of the garbage collector's work;
// a lone member pays the same per packet. Packets wait in an unbuffered
// channel as in NetTransport, so a backlog now holds their size, not 64 KiB
// each.
//
// It implements the memberlist.Transport methods that transport uses.
// Shutdown never blocks on memberlist reading the channels (the listeners
// give up a pending hand-off when it starts).
type netTransport struct {
	bindIP net.IP
	port   int
	tcp    *net.TCPListener
	udp    *net.UDPConn
	logger *log.Logger

	packetCh chan *memberlist.Packet
	streamCh chan net.Conn
	stop     chan struct{}
	shutdown atomic.Bool
	wg       sync.WaitGroup
	once     sync.Once
}

// udpPacketBufSize bounds a received packet, as in NetTransport (the
// largest UDP payload).
const udpPacketBufSize = 65536

// udpRecvBufSize is the socket receive buffer asked for (halved until the
// kernel accepts), as in NetTransport.
const udpRecvBufSize = 2 * 1024 * 1024

// newNetTransport binds TCP and UDP on bindIP:port. With port 0 the kernel
// picks the TCP port and the UDP socket must then get the same number, which
// can collide with another process; like memberlist's own default transport,
// retry a few times.
func newNetTransport(bindIP string, port int, logger *log.Logger) (*netTransport, error) {
	ip := net.ParseIP(bindIP)
	if ip == nil {
		return nil, fmt.Errorf("bind address %q is not an IP", bindIP)
	}
	attempts := 1
	if port == 0 {
		attempts = 10
	}
	var err error
	for range attempts {
		var t *netTransport
		if t, err = bindNetTransport(ip, port, logger); err == nil {
			return t, nil
		}
	}
	return nil, err
}

func bindNetTransport(ip net.IP, port int, logger *log.Logger) (*netTransport, error) {
	tcp, err := net.ListenTCP("tcp", &net.TCPAddr{IP: ip, Port: port})
	if err != nil {
		return nil, fmt.Errorf("tcp listen: %w", err)
	}
	port = tcp.Addr().(*net.TCPAddr).Port
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: ip, Port: port})
	if err != nil {
		_ = tcp.Close()
		return nil, fmt.Errorf("udp listen: %w", err)
	}
	for size := udpRecvBufSize; size > 0; size /= 2 {
		if udp.SetReadBuffer(size) == nil {
			break
		}
	}
	t := &netTransport{
		bindIP:   ip,
		port:     port,
		tcp:      tcp,
		udp:      udp,
		logger:   logger,
		packetCh: make(chan *memberlist.Packet),
		streamCh: make(chan net.Conn),
		stop:     make(chan struct{}),
	}
	t.wg.Add(2)
	go t.listenTCP()
	go t.listenUDP()
	return t, nil
}

// GetAutoBindPort is the bound port (the kernel's choice for port 0).
func (t *netTransport) GetAutoBindPort() int { return t.port }

// FinalAdvertiseAddr implements memberlist.Transport: the given address, or
// the bound one.
func (t *netTransport) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	if ip == "" {
		return t.bindIP, t.port, nil
	}
	addr := net.ParseIP(ip)
	if addr == nil {
		return nil, 0, fmt.Errorf("failed to parse advertise address %q", ip)
	}
	if ip4 := addr.To4(); ip4 != nil {
		addr = ip4
	}
	return addr, port, nil
}

// WriteToAddress sends one packet from the bound UDP socket.
func (t *netTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	ua, err := net.ResolveUDPAddr("udp", a.Addr)
	if err != nil {
		return time.Time{}, err
	}
	_, err = t.udp.WriteTo(b, ua)
	// After the write, as NetTransport: RTTs come out a little short
	// rather than including delays before the send.
	return time.Now(), err
}

// PacketCh is where received packets are handed to memberlist.
func (t *netTransport) PacketCh() <-chan *memberlist.Packet { return t.packetCh }

// StreamCh is where accepted TCP connections are handed to memberlist.
func (t *netTransport) StreamCh() <-chan net.Conn { return t.streamCh }

// Shutdown closes both sockets and waits for the listeners. Idempotent.
func (t *netTransport) Shutdown() error {
	t.once.Do(func() {
		t.shutdown.Store(true)
		close(t.stop)
		_ = t.tcp.Close()
		_ = t.udp.Close()
		t.wg.Wait()
	})
	return nil
}

func (t *netTransport) listenUDP() {
	defer t.wg.Done()
	buf := make([]byte, udpPacketBufSize)
	for {
		n, addr, err := t.udp.ReadFrom(buf)
		ts := time.Now() // as close to the read as possible: RTTs use it
		if err != nil {
			if t.shutdown.Load() {
				return
			}
			t.logger.Printf("[ERR] memberlist: Error reading UDP packet: %v", err)
			continue
		}
		if n < 1 {
			t.logger.Printf("[ERR] memberlist: UDP packet too short (%d bytes) %s", n, memberlist.LogAddress(addr))
			continue
		}
		metrics.IncrCounter([]string{"memberlist", "udp", "received"}, float32(n))
		b := make([]byte, n)
		copy(b, buf)
		p := &memberlist.Packet{Buf: b, From: addr, Timestamp: ts}
		select {
		case t.packetCh <- p:
		case <-t.stop:
			return
		}
	}
}

func (t *netTransport) listenTCP() {
	defer t.wg.Done()
	const baseDelay, maxDelay = 5 * time.Millisecond, time.Second
	var delay time.Duration
	for {
		c, err := t.tcp.AcceptTCP()
		if err != nil {
			if t.shutdown.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			delay = min(max(2*delay, baseDelay), maxDelay)
			t.logger.Printf("[ERR] memberlist: Error accepting TCP connection: %v", err)
			time.Sleep(delay)
			continue
		}
		delay = 0
		select {
		case t.streamCh <- c:
		case <-t.stop:
			_ = c.Close()
			return
		}
	}
}
