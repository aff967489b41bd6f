package consensus

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/raft"

	"github.com/kelpie/cluster/internal/netx"
)

// streamLayer is raft's TCP stream layer with two additions: every outgoing
// connection binds the node's own IP as its source (so nodes on 127.0.0.N are
// distinguishable on the wire), and an optional in-process fault filter.
type streamLayer struct {
	net.Listener
	advertise net.Addr
	dialer    *netx.Dialer
	tlsClient *tls.Config
}

func newStreamLayer(bind, advertise string, filter netx.Filter, tlsServer, tlsClient *tls.Config) (*streamLayer, error) {
	l, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, fmt.Errorf("consensus: listen for raft on %s: %w", bind, err)
	}
	adv := l.Addr()
	if advertise != "" {
		a, err := net.ResolveTCPAddr("tcp", advertise)
		if err != nil {
			l.Close()
			return nil, fmt.Errorf("consensus: advertise address %q: %w", advertise, err)
		}
		adv = a
	}
	if ta, ok := adv.(*net.TCPAddr); ok && ta.IP.IsUnspecified() {
		l.Close()
		return nil, fmt.Errorf("consensus: raft advertise address %s is not a concrete IP", adv)
	}
	host, _, _ := net.SplitHostPort(l.Addr().String())
	var ln net.Listener = netx.Listener(l, filter)
	if tlsServer != nil {
		ln = tls.NewListener(ln, tlsServer)
	}
	return &streamLayer{
		Listener:  ln,
		advertise: adv,
		dialer:    &netx.Dialer{SourceIP: host, Filter: filter},
		tlsClient: tlsClient,
	}, nil
}

// Dial implements raft.StreamLayer.
func (s *streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := s.dialer.DialContext(ctx, "tcp", string(address))
	if err != nil || s.tlsClient == nil {
		return c, err
	}
	tc := tls.Client(c, s.tlsClient)
	if err := tc.HandshakeContext(ctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("consensus: tls handshake with %s: %w", address, err)
	}
	return tc, nil
}

// Addr is the advertised address (what peers dial).
func (s *streamLayer) Addr() net.Addr { return s.advertise }
