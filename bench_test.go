package cluster

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// benchNode starts a single-server cluster with n actors placed.
func benchNode(b *testing.B, actors int) *Node {
	b.Helper()
	cfg := TestConfig()
	cfg.NodeID = "bench"
	cfg.BindAddr = allocIP()
	cfg.Server, cfg.BootstrapExpect = true, 1
	cfg.Voters.Voters = 1
	n, err := New(cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := n.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { n.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := n.Join(ctx, nil); err != nil {
		b.Fatal(err)
	}
	for n.LeaseRemaining() == 0 {
		time.Sleep(10 * time.Millisecond)
	}
	errs := make(chan error, actors)
	for i := 0; i < actors; i++ {
		go func() {
			_, err := n.Place(ctx, fmt.Sprintf("actor-%d", i), PlaceOptions{})
			errs <- err
		}()
	}
	for i := 0; i < actors; i++ {
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
	return n
}

// BenchmarkLookup is the local-read fast path: a server's replica lookup.
func BenchmarkLookup(b *testing.B) {
	n := benchNode(b, 10_000)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := n.Lookup(ctx, "actor-4242"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLookupParallel is the same from every core at once.
func BenchmarkLookupParallel(b *testing.B) {
	n := benchNode(b, 10_000)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := n.Lookup(ctx, "actor-4242"); err != nil {
				b.Fatal(err)
			}
		}
	})
}
