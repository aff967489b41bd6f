package cluster

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kelpie/cluster/consensus"
	"github.com/kelpie/cluster/gossip"
)

func gossipKey(t *testing.T) string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

// TestSecurity_KeyRotationUnderTraffic: rotating the gossip key on a live
// 5-node cluster with traffic (install → use → remove) drops nobody, and a
// node with the old key can no longer join.
func TestSecurity_KeyRotationUnderTraffic(t *testing.T) {
	oldKey, newKey := gossipKey(t), gossipKey(t)
	withKey := func(k string) func(*Config) { return func(c *Config) { c.EncryptKey = k } }
	tc := newTestCluster(t)
	ns := tc.startServers(3, nodeOpts{durable: true, mutate: withKey(oldKey)})
	for i := 1; i <= 2; i++ {
		c := tc.start(fmt.Sprintf("c%d", i), nodeOpts{durable: true, mutate: withKey(oldKey)})
		tc.join(c, tc.seed("s1"), 20*time.Second)
		ns = append(ns, c)
	}
	ids := []string{"s1", "s2", "s3", "c1", "c2"}
	waitFor(t, 10*time.Second, "all active with leases", func() bool {
		for _, n := range ns {
			if n.LeaseRemaining() == 0 {
				return false
			}
		}
		return converged(ns, statuses(ids, consensus.StatusActive))
	})
	epoch := ns[0].View().Epoch

	stop := make(chan struct{})
	var ok, failed atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_, err := ns[(w+i)%len(ns)].Invoke(ctx, fmt.Sprintf("rot-%d", i%10), []byte(`{"op":"incr"}`))
				cancel()
				if err != nil && !errors.Is(err, ErrUnknownOutcome) {
					failed.Add(1)
				} else {
					ok.Add(1)
				}
			}
		}()
	}
	ctx := context.Background()
	for _, step := range []struct {
		op  gossip.KeyOp
		key string
	}{{gossip.KeyInstall, newKey}, {gossip.KeyUse, newKey}, {gossip.KeyRemove, oldKey}} {
		r, err := ns[3].Keyring(ctx, step.op, step.key)
		if err != nil || r.NumErr != 0 || r.NumResp != 5 {
			t.Fatalf("%s: %+v %v", step.op, r, err)
		}
		time.Sleep(time.Second) // traffic and gossip run on the new keyring
	}
	close(stop)
	wg.Wait()
	r, err := ns[0].Keyring(ctx, gossip.KeyList, "")
	if err != nil || len(r.Keys) != 1 || r.Keys[newKey] != 5 {
		t.Fatalf("keys after rotation: %+v %v", r, err)
	}
	if e := ns[0].View().Epoch; e != epoch || !converged(ns, statuses(ids, consensus.StatusActive)) {
		t.Fatalf("membership changed during rotation: epoch %d → %d", epoch, e)
	}
	t.Logf("traffic during rotation: %d ok, %d failed", ok.Load(), failed.Load())
	if failed.Load() > 0 {
		t.Errorf("%d requests failed during key rotation", failed.Load())
	}
	// A node still holding the old key cannot get in, and says why in its log.
	late := tc.start("late", nodeOpts{mutate: withKey(oldKey)})
	jctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := late.Join(jctx, tc.seed("s1")); err == nil {
		t.Fatal("node with the retired key joined")
	}
	if _, ok := ns[0].View().Member("late"); ok {
		t.Fatal("node with the retired key is in the view")
	}
}
