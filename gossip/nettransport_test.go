package gossip

import (
	"bytes"
	"io"
	"log"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// A received packet is handed on in a buffer of its own size (not a 64 KiB
// one per packet, as memberlist's NetTransport does), with its sender and a
// receive time; streams arrive on StreamCh.
func TestNetTransportPacketsAndStreams(t *testing.T) {
	a, err := newNetTransport(nextIP(), 0, log.New(io.Discard, "", 0))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Shutdown()
	b, err := newNetTransport(nextIP(), 0, log.New(io.Discard, "", 0))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Shutdown()
	bAddr := memberlist.Address{Addr: net.JoinHostPort(b.bindIP.String(), strconv.Itoa(b.port))}

	for _, msg := range [][]byte{[]byte("ping"), bytes.Repeat([]byte{7}, 1400)} {
		sent, err := a.WriteToAddress(msg, bAddr)
		if err != nil {
			t.Fatal(err)
		}
		select {
		case p := <-b.PacketCh():
			if !bytes.Equal(p.Buf, msg) || cap(p.Buf) != len(msg) {
				t.Errorf("packet of %d bytes arrived as %d bytes in a buffer of %d", len(msg), len(p.Buf), cap(p.Buf))
			}
			if got := p.From.(*net.UDPAddr); !got.IP.Equal(a.bindIP) || got.Port != a.port {
				t.Errorf("packet from %v, want %s:%d", p.From, a.bindIP, a.port)
			}
			if p.Timestamp.Before(sent.Add(-time.Second)) {
				t.Errorf("receive time %v long before send time %v", p.Timestamp, sent)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("packet not received")
		}
	}

	c, err := net.Dial("tcp", bAddr.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case s := <-b.StreamCh():
		s.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("stream not accepted")
	}

	ip, port, err := b.FinalAdvertiseAddr("", 0)
	if err != nil || !ip.Equal(b.bindIP) || port != b.port {
		t.Errorf("FinalAdvertiseAddr(\"\", 0) = %v, %d, %v; want the bound %s:%d", ip, port, err, b.bindIP, b.port)
	}
}

// Shutdown returns although a packet and a stream wait for a reader that
// never comes.
func TestNetTransportShutdownWithPendingHandOff(t *testing.T) {
	a, err := newNetTransport(nextIP(), 0, log.New(io.Discard, "", 0))
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort(a.bindIP.String(), strconv.Itoa(a.port))
	if _, err := a.WriteToAddress([]byte("x"), memberlist.Address{Addr: addr}); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	time.Sleep(50 * time.Millisecond) // let both listeners reach their hand-off
	done := make(chan struct{})
	go func() { a.Shutdown(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown blocked on a pending hand-off")
	}
}
