package cluster

import "context"

// Host is implemented by the embedding actor runtime. The library never runs
// actors itself: it tells the host when to activate an actor (with the
// fencing token of the committed placement and the state to start from) and
// when to deactivate one (returning its final state).
//
// A Node created with a nil Host hosts no actors; it still takes part in
// membership and may route requests.
type Host interface {
	// Activate starts actor on this node. token is the Raft index of the
	// placement commit; the host must reject work stamped with an older token.
	Activate(ctx context.Context, actor string, token uint64, state []byte) error
	// Deactivate stops actor and returns its final state. After it returns
	// the host must refuse all work for actor until a new Activate.
	Deactivate(ctx context.Context, actor string) (finalState []byte, err error)
}
