package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	cluster "github.com/kelpie/cluster"
	"github.com/kelpie/cluster/consensus"
	"github.com/kelpie/cluster/integration/nemesis"
)

// profile is a failure-detector setting passed to every kelpied.
type profile struct {
	name                      string
	probeInterval, probeTimeo time.Duration
	suspicionMult             int
}

func (p profile) args() []string {
	return []string{"--probe-interval", p.probeInterval.String(), "--probe-timeout", p.probeTimeo.String(),
		"--suspicion-mult", fmt.Sprint(p.suspicionMult)}
}

func (p profile) params(nodes int) map[string]string {
	return map[string]string{"profile": p.name, "nodes": fmt.Sprint(nodes), "probe_interval": p.probeInterval.String(),
		"probe_timeout": p.probeTimeo.String(), "suspicion_mult": fmt.Sprint(p.suspicionMult)}
}

// profiles: the default and the documented knobs turned both ways.
var (
	defaultProfile = func() profile {
		g := cluster.DefaultConfig().Gossip
		return profile{"default", g.ProbeInterval, g.ProbeTimeout, g.SuspicionMult}
	}()
	profiles = []profile{
		defaultProfile,
		// Faster: shorter probes and suspicion; less room for pauses.
		{"fast", 200 * time.Millisecond, 100 * time.Millisecond, 4},
		// memberlist's stock LAN profile, as serf and Consul ship it.
		{"memberlist-lan", time.Second, 500 * time.Millisecond, 4},
	}
)

// selectedProfiles: those named in KELPIE_BENCH_PROFILES (comma-separated),
// or all.
func selectedProfiles() []profile {
	want := os.Getenv("KELPIE_BENCH_PROFILES")
	if want == "" {
		return profiles
	}
	var out []profile
	for _, p := range profiles {
		if slices.Contains(strings.Split(want, ","), p.name) {
			out = append(out, p)
		}
	}
	return out
}

// fleet is n kelpied processes (3 servers, the rest clients) in this
// namespace on 127.0.0.11 onwards.
type fleet struct {
	*nemesis.Cluster
	servers, clients []string
}

func startFleet(t *testing.T, n int, p profile) *fleet {
	t.Helper()
	var specs []nemesis.NodeSpec
	f := &fleet{}
	for i := 0; i < n; i++ {
		s := nemesis.NodeSpec{IP: fmt.Sprintf("127.0.%d.%d", 1+i/200, 11+i%200)}
		if i < 3 {
			s.Name, s.Server = fmt.Sprintf("s%d", i+1), true
			f.servers = append(f.servers, s.Name)
		} else {
			s.Name = fmt.Sprintf("c%d", i-2)
			f.clients = append(f.clients, s.Name)
		}
		specs = append(specs, s)
	}
	dir := t.TempDir()
	rec, err := nemesis.NewRecorder(filepath.Join(dir, "history.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := nemesis.NewCluster(kelpiedBin, dir, specs, rec, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	c.ExtraArgs = p.args()
	f.Cluster = c
	t.Cleanup(c.Close)
	for _, s := range specs {
		if err := c.Start(s.Name); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if detail, err := c.WaitConverged(ctx, c.Names()); err != nil {
		t.Fatalf("%d nodes did not converge: %v", n, err)
	} else {
		t.Logf("%d nodes (%s profile) converged: %s", n, p.name, detail)
	}
	return f
}

// leaderClient returns the current leader's API client, waiting for one.
func (f *fleet) leaderClient(t *testing.T) (string, *cluster.Client) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if l := f.Leader(); l != "" {
			return l, f.Client(l)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("no leader")
	return "", nil
}

// waitStatus blocks on the leader's view (blocking queries) until member id
// has status want (and, if minInc > 0, an incarnation ≥ minInc) and returns
// when that view was seen.
func (f *fleet) waitStatus(t *testing.T, id string, want consensus.Status, minInc uint64, timeout time.Duration) (time.Time, consensus.Member, error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var index uint64
	for time.Now().Before(deadline) {
		_, c := f.leaderClient(t)
		ctx, cancel := context.WithTimeout(context.Background(), 6*time.Second)
		v, err := c.View(ctx, index, 5*time.Second)
		cancel()
		seen := time.Now()
		if err != nil {
			index = 0
			time.Sleep(50 * time.Millisecond)
			continue
		}
		if m, ok := v.Member(id); ok && m.Status == want && m.Incarnation >= minInc {
			return seen, m, nil
		}
		index = v.Index
	}
	return time.Time{}, consensus.Member{}, fmt.Errorf("%s not %s within %s", id, want, timeout)
}

// member returns id's record in the leader's current view.
func (f *fleet) member(t *testing.T, id string) consensus.Member {
	t.Helper()
	_, c := f.leaderClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	v, err := c.View(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := v.Member(id)
	return m
}

// restart starts id again and waits until it is Active in a new incarnation.
func (f *fleet) restart(t *testing.T, id string, prevInc uint64) {
	t.Helper()
	if err := f.Start(id); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.waitStatus(t, id, consensus.StatusActive, prevInc+1, time.Minute); err != nil {
		t.Fatal(err)
	}
}

// failedMembers lists the members the leader's view shows Failed.
func failedMembers(v consensus.View) []string {
	var out []string
	for _, m := range v.Members {
		if m.Status == consensus.StatusFailed {
			out = append(out, m.ID)
		}
	}
	return out
}
