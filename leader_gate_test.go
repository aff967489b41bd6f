package cluster

import (
	"testing"
	"time"
)

func TestLeaderGate(t *testing.T) {
	g := newLeaderGate()
	term, ready := g.state()
	if term != 0 {
		t.Fatalf("new gate: term %d, want 0", term)
	}
	select {
	case <-ready:
		t.Fatal("new gate is open")
	default:
	}
	waited := make(chan struct{})
	go func() { <-ready; close(waited) }()
	g.open(7)
	select {
	case <-waited:
	case <-time.After(5 * time.Second):
		t.Fatal("open did not release a waiter")
	}
	if term, _ := g.state(); term != 7 {
		t.Fatalf("term %d after open(7)", term)
	}
	g.open(8) // re-opening for a later term must not close twice
	g.shut()
	term, ready = g.state()
	if term != 0 {
		t.Fatalf("term %d after shut", term)
	}
	select {
	case <-ready:
		t.Fatal("gate still open after shut")
	default:
	}
	g.shut() // idempotent
	g.open(9)
	if _, ready := g.state(); ready == nil {
		t.Fatal("nil channel")
	}
	select {
	case <-ready: // the channel taken while shut is closed by the next open
	default:
		t.Fatal("open after shut did not close the waiting channel")
	}
}
