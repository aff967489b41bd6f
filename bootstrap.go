package cluster

import (
	"context"
	"sort"
	"strconv"
	"time"

	"github.com/kelpie/cluster/consensus"
	"github.com/kelpie/cluster/gossip"
)

// bootstrapLoop implements --bootstrap-expect: once BootstrapExpect servers
// with the same setting see each other in gossip, the one with the lowest ID
// bootstraps Raft with all of them as voters. The others never bootstrap:
// they receive the configuration from the new leader. A server with Raft
// state, or that finds any peer already in a Raft cluster, never bootstraps.
func (n *Node) bootstrapLoop() {
	if has, err := n.raft.HasState(); err != nil || has {
		if err != nil {
			n.logger.Error("bootstrap: cannot read raft state", "err", err)
		}
		return
	}
	want := strconv.Itoa(n.cfg.BootstrapExpect)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-tick.C:
		}
		if id, _ := n.raft.Leader(); id != "" {
			return // someone else bootstrapped and we were added
		}
		var servers []gossip.Member
		for _, s := range n.gossip.AliveServers() {
			if s.Tags.Expect == want {
				servers = append(servers, s)
			} else if s.Tags.Expect != "" && s.Tags.Expect != "0" {
				n.logger.Error("bootstrap: peer expects a different cluster size", "peer", s.Name, "peer_expect", s.Tags.Expect, "expect", want)
			}
		}
		if len(servers) < n.cfg.BootstrapExpect {
			continue
		}
		sort.Slice(servers, func(i, j int) bool { return servers[i].Name < servers[j].Name })
		servers = servers[:n.cfg.BootstrapExpect]
		if servers[0].Name != n.cfg.NodeID {
			continue // the lowest ID bootstraps; we wait to hear from its leader
		}
		if n.peersHaveCluster(servers) {
			n.logger.Info("bootstrap: a peer already belongs to a raft cluster; not bootstrapping")
			return
		}
		var peers []consensus.Peer
		for _, s := range servers {
			peers = append(peers, consensus.Peer{ID: s.Name, Address: s.Tags.RaftAddr, Voter: true})
		}
		if err := n.raft.Bootstrap(peers); err != nil {
			n.logger.Error("bootstrap failed", "err", err)
			return
		}
		n.mu.Lock()
		n.mu.bootstrapped = true
		n.mu.Unlock()
		n.logger.Info("bootstrapped raft", "voters", len(peers))
		return
	}
}

// peersHaveCluster asks the other servers whether any already has a Raft
// term (so belongs to an existing cluster); bootstrapping then would create a
// second cluster.
func (n *Node) peersHaveCluster(servers []gossip.Member) bool {
	for _, s := range servers {
		if s.Name == n.cfg.NodeID || s.Tags.HTTPAddr == "" {
			continue
		}
		c, err := n.peerClient(s.Tags.HTTPAddr)
		if err != nil {
			continue
		}
		ctx, cancel := context.WithTimeout(n.ctx, 2*time.Second)
		st, err := c.Status(ctx)
		cancel()
		if err == nil && (st.Term > 0 || st.Leader.Known) {
			return true
		}
	}
	return false
}
