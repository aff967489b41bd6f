package nemesis

import (
	"context"
	"sync"
	"time"

	"github.com/kelpie/cluster/consensus"
	"github.com/kelpie/cluster/placement"
)

// Observer polls every node while a scenario runs: /v1/status every
// StatusEvery (G1 leader claims per term, G3 epochs and terms per node),
// /v1/view every ViewEvery (G2 one view per epoch, G10 Left/Active), and a
// placement snapshot of one server every SnapshotEvery (G5). Each node is
// polled by one goroutine, one request at a time, so a node's observations
// are in real-time order.
type Observer struct {
	StatusEvery   time.Duration
	ViewEvery     time.Duration
	SnapshotEvery time.Duration

	c      *Cluster
	rec    *Recorder
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// NewObserver returns an observer with the default intervals.
func NewObserver(c *Cluster, rec *Recorder) *Observer {
	return &Observer{StatusEvery: 250 * time.Millisecond, ViewEvery: time.Second, SnapshotEvery: time.Second, c: c, rec: rec}
}

// Start starts the polling goroutines.
func (o *Observer) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	o.cancel = cancel
	for _, n := range o.c.Nodes() {
		o.wg.Add(1)
		go func() {
			defer o.wg.Done()
			o.pollNode(ctx, n)
		}()
	}
	o.wg.Add(1)
	go func() {
		defer o.wg.Done()
		o.pollSnapshots(ctx)
	}()
}

// Stop stops polling and waits for the goroutines.
func (o *Observer) Stop() {
	if o.cancel != nil {
		o.cancel()
	}
	o.wg.Wait()
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (o *Observer) pollNode(ctx context.Context, n *Node) {
	lastView := time.Time{}
	for sleepCtx(ctx, o.StatusEvery) {
		if !n.running() || o.c.Stopped(n.Name) {
			continue
		}
		o.ObserveStatus(ctx, n)
		if time.Since(lastView) >= o.ViewEvery {
			lastView = time.Now()
			o.ObserveView(ctx, n)
		}
	}
}

// ObserveStatus records one status answer of n (nothing on error).
func (o *Observer) ObserveStatus(ctx context.Context, n *Node) {
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	sent := Mono()
	s, err := n.Client.Status(cctx)
	if err != nil {
		return
	}
	obs := StatusObs{Node: n.Name, Sent: sent, Time: Mono(), Term: s.Term, IsLeader: s.IsLeader, Leader: s.Leader.ID,
		Epoch: s.Epoch, ViewIndex: s.ViewIndex, Ready: s.Ready, SelfStatus: s.SelfStatus.String(), Role: string(s.Role)}
	for _, p := range s.Voters {
		if p.Voter {
			obs.Voters = append(obs.Voters, p.ID)
		}
	}
	o.rec.Status(obs)
}

// ObserveView records one committed view as n serves it.
func (o *Observer) ObserveView(ctx context.Context, n *Node) (ViewObs, bool) {
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	sent := Mono()
	v, err := n.Client.View(cctx, 0, 0)
	if err != nil {
		return ViewObs{}, false
	}
	obs := viewObs(n.Name, Mono(), v)
	obs.Sent = sent
	o.rec.View(obs)
	return obs, true
}

func viewObs(node string, at int64, v consensus.View) ViewObs {
	obs := ViewObs{Node: node, Time: at, Epoch: v.Epoch, Index: v.Index}
	for _, m := range v.Members {
		obs.Members = append(obs.Members, MemberBrief{ID: m.ID, Status: m.Status.String(), Incarnation: m.Incarnation})
	}
	return obs
}

func placementBrief(p placement.Placement) PlacementBrief {
	return PlacementBrief{Actor: p.Actor, Node: p.Node, Token: p.Token, State: p.State.String(), Incarnation: p.Incarnation, Migration: p.Migration}
}

func (o *Observer) pollSnapshots(ctx context.Context) {
	i := 0
	for sleepCtx(ctx, o.SnapshotEvery) {
		servers := o.c.Servers()
		for k := range servers {
			name := servers[(i+k)%len(servers)]
			if o.c.Running(name) && !o.c.Stopped(name) {
				o.Snapshot(ctx, o.c.Node(name))
				break
			}
		}
		i++
	}
}

// Snapshot records n's placement table if n's view did not change while it
// was read (so the placements are those of that view). It reports whether
// it recorded one.
func (o *Observer) Snapshot(ctx context.Context, n *Node) (Snapshot, bool) {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	v1, err := n.Client.View(cctx, 0, 0)
	if err != nil {
		return Snapshot{}, false
	}
	pl, err := n.Client.Placements(cctx, "")
	if err != nil {
		return Snapshot{}, false
	}
	v2, err := n.Client.View(cctx, 0, 0)
	if err != nil || v1.Index != v2.Index || v1.Epoch != v2.Epoch || pl.Index < v1.Index {
		return Snapshot{}, false
	}
	s := Snapshot{Node: n.Name, Time: Mono(), View: viewObs(n.Name, Mono(), v1), Index: pl.Index}
	for _, p := range pl.Placements {
		s.Placements = append(s.Placements, placementBrief(p))
	}
	o.rec.Snapshot(s)
	return s, true
}
