package netx

import (
	"context"
	"errors"
	"net"
	"time"
)

// ErrFiltered is returned by connections and dials cut by a Filter.
var ErrFiltered = errors.New("netx: link cut by fault filter")

// Dialer dials TCP connections whose source address is the node's own bind
// IP, optionally through a Filter.
type Dialer struct {
	// SourceIP is the local IP every connection binds; empty lets the kernel
	// choose (only sensible when the node binds 0.0.0.0).
	SourceIP string
	// Filter, if set, cuts links in-process (tests only).
	Filter Filter
}

// DialContext dials network/address from d.SourceIP.
func (d *Dialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	nd := net.Dialer{}
	if d.SourceIP != "" && d.SourceIP != "0.0.0.0" && d.SourceIP != "::" {
		ip := net.ParseIP(d.SourceIP)
		if ip == nil {
			return nil, &net.AddrError{Err: "invalid source IP", Addr: d.SourceIP}
		}
		nd.LocalAddr = &net.TCPAddr{IP: ip}
	}
	if d.Filter != nil {
		host, _, err := net.SplitHostPort(address)
		if err == nil && !d.Filter.Allow(d.SourceIP, host) {
			// Behave like a black-holed SYN: wait out the deadline.
			<-ctx.Done()
			return nil, &net.OpError{Op: "dial", Net: network, Err: ErrFiltered}
		}
	}
	c, err := nd.DialContext(ctx, network, address)
	if err != nil {
		return nil, err
	}
	return WrapConn(c, d.Filter), nil
}

// DialTimeout is DialContext with a timeout, for APIs that take one.
func (d *Dialer) DialTimeout(network, address string, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return d.DialContext(ctx, network, address)
}

// WrapConn makes c consult f on every Read and Write. A nil f returns c.
func WrapConn(c net.Conn, f Filter) net.Conn {
	if f == nil {
		return c
	}
	return &filteredConn{Conn: c, f: f}
}

type filteredConn struct {
	net.Conn
	f Filter
}

func (c *filteredConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 && !Allowed(c.f, c.RemoteAddr(), c.LocalAddr()) {
		c.Conn.Close()
		return 0, &net.OpError{Op: "read", Net: "tcp", Err: ErrFiltered}
	}
	return n, err
}

func (c *filteredConn) Write(b []byte) (int, error) {
	if !Allowed(c.f, c.LocalAddr(), c.RemoteAddr()) {
		c.Conn.Close()
		return 0, &net.OpError{Op: "write", Net: "tcp", Err: ErrFiltered}
	}
	return c.Conn.Write(b)
}

// Listener wraps every accepted connection with WrapConn. A nil f returns l.
func Listener(l net.Listener, f Filter) net.Listener {
	if f == nil {
		return l
	}
	return &filteredListener{Listener: l, f: f}
}

type filteredListener struct {
	net.Listener
	f Filter
}

func (l *filteredListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return WrapConn(c, l.f), nil
}
