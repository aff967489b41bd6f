package placement

import (
	"errors"
	"fmt"
)

// ErrNoCapacity: at least one Active node matches the request's zone and
// labels, but every such node is full. Retrying may succeed once actors are
// released or capacity is added.
var ErrNoCapacity = errors.New("placement: no capacity on any matching node")

// ErrNoEligibleNode: no Active node matches the request's zone and labels at
// all. Retrying helps only if such a node joins; it is usually a
// configuration error in the request or in the nodes' zones and labels.
var ErrNoEligibleNode = errors.New("placement: no active node matches the constraints")

// NodeInfo is what the policy knows about a node.
type NodeInfo struct {
	ID     string
	Zone   string
	Labels map[string]string
	// Capacity is the maximum number of actors on the node; 0 means
	// unlimited. A negative capacity is treated as "full" (never chosen),
	// the safe reading of a nonsensical value.
	Capacity int
	// Active: the node is Active in the committed view. Only Active nodes
	// are ever chosen (G5 PlacementConsistency).
	Active bool
}

// Request asks where to place an actor.
type Request struct {
	Actor string
	// Prefer names a preferred node (affinity): it is chosen if it is
	// eligible (Active, matches Zone and Labels, has free capacity), even
	// when other nodes are less loaded. "" means no preference.
	Prefer string
	// Zone is the required zone; "" means any.
	Zone string
	// Labels are required labels: every key must be present on the node
	// with exactly this value (an empty value must be present and empty).
	Labels map[string]string
}

// Choose picks the node for req among nodes.
//
// A node matches when it is Active, has a non-empty ID, is in req.Zone (if
// set) and carries every label of req.Labels. A matching node is eligible
// when it has free capacity: Capacity == 0 or load(ID) < Capacity. Among the
// eligible nodes Choose returns req.Prefer if it is one of them; otherwise
// the least loaded, ties broken by the highest Rendezvous(req.Actor, ID)
// score and then by the smaller ID. The rendezvous tie-break spreads actors
// evenly over equally loaded nodes while keeping the choice a pure function
// of (actor, node set, loads).
//
// If no node is eligible the error wraps ErrNoCapacity when some node
// matched (all such nodes are full) and ErrNoEligibleNode otherwise.
//
// load reports a node's current number of actors (Table.Count fits); it is
// called at most once per matching node, and nil means every load is 0.
// Node IDs should be unique; Choose does not allocate except on error.
func Choose(req Request, nodes []NodeInfo, load func(node string) int) (string, error) {
	var (
		matched   bool
		best      = -1 // index into nodes
		bestLoad  int
		bestScore uint64
		scored    bool // bestScore is computed (lazily: only ties need it)
	)
	for i := range nodes {
		n := &nodes[i]
		if !matches(n, &req) {
			continue
		}
		matched = true
		l := 0
		if load != nil {
			l = load(n.ID)
		}
		if n.Capacity < 0 || (n.Capacity > 0 && l >= n.Capacity) {
			continue
		}
		if req.Prefer != "" && n.ID == req.Prefer {
			return n.ID, nil
		}
		switch {
		case best < 0 || l < bestLoad:
			best, bestLoad, scored = i, l, false
		case l == bestLoad:
			if !scored {
				bestScore, scored = Rendezvous(req.Actor, nodes[best].ID), true
			}
			s := Rendezvous(req.Actor, n.ID)
			if s > bestScore || (s == bestScore && n.ID < nodes[best].ID) {
				best, bestScore = i, s
			}
		}
	}
	switch {
	case best >= 0:
		return nodes[best].ID, nil
	case matched:
		return "", fmt.Errorf("%w: actor %q", ErrNoCapacity, req.Actor)
	default:
		return "", fmt.Errorf("%w: actor %q (zone %q, labels %v)", ErrNoEligibleNode, req.Actor, req.Zone, req.Labels)
	}
}

// matches reports whether n is Active, has an ID, and satisfies req's zone
// and label constraints. Iterating req.Labels in map order is fine: the
// result is the conjunction over all of them.
func matches(n *NodeInfo, req *Request) bool {
	if !n.Active || n.ID == "" {
		return false
	}
	if req.Zone != "" && n.Zone != req.Zone {
		return false
	}
	if len(req.Labels) == 0 {
		return true
	}
	for k, v := range req.Labels {
		if got, ok := n.Labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// FNV-1a (64-bit) parameters.
const (
	fnvOffset64 = 14695981039346656037
	fnvPrime64  = 1099511628211
)

// Rendezvous returns the rendezvous (highest-random-weight) score of placing
// actor on node: FNV-1a 64 over the bytes of actor, one 0x00 byte and the
// bytes of node, followed by the splitmix64 finalizer (xor-shift 30, multiply
// 0xbf58476d1ce4e5b9, xor-shift 27, multiply 0x94d049bb133111eb, xor-shift
// 31) to mix FNV's weak high bits.
//
// The function is part of the placement contract and is stable across
// versions: committed placements and tie-breaks depend on it, and replicas
// or leaders running different builds must agree. Changing it requires a
// versioned migration. The golden values in the tests pin it.
func Rendezvous(actor, node string) uint64 {
	h := uint64(fnvOffset64)
	for i := 0; i < len(actor); i++ {
		h ^= uint64(actor[i])
		h *= fnvPrime64
	}
	h *= fnvPrime64 // the 0x00 separator: h ^= 0 is a no-op
	for i := 0; i < len(node); i++ {
		h ^= uint64(node[i])
		h *= fnvPrime64
	}
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}
