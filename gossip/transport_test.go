package gossip

import (
	"net"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/kelpie/cluster/internal/netx"
)

// recordingFilter records the source of everything arriving at dst.
type recordingFilter struct {
	dst string
	mu  sync.Mutex
	src map[string]int
}

func (f *recordingFilter) Allow(src, dst string) bool {
	if dst == f.dst {
		f.mu.Lock()
		f.src[src]++
		f.mu.Unlock()
	}
	return true
}

func (f *recordingFilter) sources() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string]int, len(f.src))
	for k, v := range f.src {
		out[k] = v
	}
	return out
}

func TestTrafficLeavesFromBindAddr(t *testing.T) {
	ipA := nextIP()
	rec := &recordingFilter{dst: ipA, src: map[string]int{}}
	a := startNode(t, "b1", true, func(c *Config) { c.BindAddr = ipA; c.Filter = rec })
	b := startNode(t, "b2", true)
	joinTo(t, b, a) // b dials a over TCP, then both probe each other over UDP
	waitAllAlive(t, []*node{a, b})

	// Everything a received (packets and streams, with their real kernel
	// source address) came from b's bind address.
	waitFor(t, 2*time.Second, "traffic from b2", func() bool { return rec.sources()[b.ip] > 0 })
	for src, n := range rec.sources() {
		if src != b.ip {
			t.Errorf("a received %d packets/streams from %s, want only %s", n, src, b.ip)
		}
	}

	// A stream dialed through the transport is bound to BindAddr.
	ln, err := net.Listen("tcp", net.JoinHostPort(nextIP(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Addr, 2)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c.RemoteAddr()
			c.Close()
		}
	}()
	a.mu.Lock()
	tr := a.mu.transport
	a.mu.Unlock()
	dials := map[string]func() (net.Conn, error){
		"DialAddressTimeout": func() (net.Conn, error) {
			return tr.DialAddressTimeout(memberlist.Address{Addr: ln.Addr().String(), Name: "x"}, time.Second)
		},
		"DialTimeout": func() (net.Conn, error) { return tr.DialTimeout(ln.Addr().String(), time.Second) },
	}
	for name, dial := range dials {
		c, err := dial()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got := netx.HostIP(c.LocalAddr()); got != ipA {
			t.Errorf("%s: local address %s, want %s", name, got, ipA)
		}
		select {
		case ra := <-accepted:
			if got := netx.HostIP(ra); got != ipA {
				t.Errorf("%s: listener saw source %s, want %s", name, got, ipA)
			}
		case <-time.After(2 * time.Second):
			t.Fatalf("%s: listener accepted nothing", name)
		}
		c.Close()
	}
}

func TestTransportShutdownEndsBlackholedDial(t *testing.T) {
	faults := netx.NewFaults()
	n := startNode(t, "t1", true, func(c *Config) { c.Filter = faults })
	target := nextIP()
	faults.BlockOneWay(n.ip, target)
	n.mu.Lock()
	tr := n.mu.transport
	n.mu.Unlock()
	errCh := make(chan error, 1)
	go func() {
		_, err := tr.DialTimeout(net.JoinHostPort(target, "1"), time.Minute)
		errCh <- err
	}()
	start := time.Now()
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errCh:
		if err == nil {
			t.Fatal("dial through a cut link succeeded")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end a black-holed dial")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Close + dial end took %v", d)
	}
}

func TestHostIP(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.2:7946":         "127.0.0.2",
		"[::1]:7946":             "::1",
		"[::ffff:127.0.0.3]:1":   "127.0.0.3",
		"127.0.0.4":              "127.0.0.4",
		"name.example:7946":      "name.example",
		"[2001:db8:0:0::1]:7946": "2001:db8::1",
	} {
		if got := hostIP(in); got != want {
			t.Errorf("hostIP(%q) = %q, want %q", in, got, want)
		}
	}
}
