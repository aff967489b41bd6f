package nemesis

import "sort"

// TokenInfo is what the history tells about one fencing token of an actor.
//
// A token is either fresh (a placement: the actor starts empty) or a
// continuation (a migration's commit or abort: the actor carries the state
// of its parent token). A chain of continuations from a fresh token is a
// lineage: the counter's value carries over inside a lineage, and starts
// again from 0 only with a new lineage, which is legal only after the
// previous owner crashed or was cut off.
type TokenInfo struct {
	Actor     string
	Token     uint64
	Node      string
	Parent    uint64 // continued token; 0 when fresh
	Migrated  bool   // known to come from a migration commit or abort
	FirstAct  int64  // first activation (0: never seen)
	InitValue int64  // counter value at the first activation
	HasInit   bool
}

// Tokens indexes every token seen in a history, per actor.
type Tokens struct {
	byActor map[string]map[uint64]*TokenInfo
}

func (ts *Tokens) get(actor string, tok uint64) *TokenInfo {
	m := ts.byActor[actor]
	if m == nil {
		m = map[uint64]*TokenInfo{}
		ts.byActor[actor] = m
	}
	ti := m[tok]
	if ti == nil {
		ti = &TokenInfo{Actor: actor, Token: tok}
		m[tok] = ti
	}
	return ti
}

// Info returns a token's record.
func (ts *Tokens) Info(actor string, tok uint64) (*TokenInfo, bool) {
	ti, ok := ts.byActor[actor][tok]
	return ti, ok
}

// Sorted lists an actor's tokens in increasing order.
func (ts *Tokens) Sorted(actor string) []uint64 {
	var out []uint64
	for t := range ts.byActor[actor] {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// Actors lists the actors, sorted.
func (ts *Tokens) Actors() []string {
	var out []string
	for a := range ts.byActor {
		out = append(out, a)
	}
	sort.Strings(out)
	return out
}

// Root follows continuations back to the fresh token of tok's lineage.
func (ts *Tokens) Root(actor string, tok uint64) uint64 {
	seen := map[uint64]bool{}
	for {
		ti, ok := ts.byActor[actor][tok]
		if !ok || ti.Parent == 0 || seen[tok] {
			return tok
		}
		seen[tok] = true
		tok = ti.Parent
	}
}

// BuildTokens indexes the tokens of h.
func BuildTokens(h *History) *Tokens {
	ts := &Tokens{byActor: map[string]map[uint64]*TokenInfo{}}
	link := func(actor string, oldTok, newTok uint64, node string) {
		if newTok == 0 {
			return
		}
		ti := ts.get(actor, newTok)
		ti.Migrated = true
		if oldTok != 0 && oldTok < newTok {
			ti.Parent = oldTok
			ts.get(actor, oldTok)
		}
		if node != "" && ti.Node == "" {
			ti.Node = node
		}
	}
	for _, m := range h.Migrations {
		switch m.State {
		case "committed":
			link(m.Actor, m.OldToken, m.NewToken, m.To)
		case "aborted":
			link(m.Actor, m.OldToken, m.NewToken, m.From)
		}
	}
	for _, o := range h.Ops {
		if o.Result != ResultOK {
			continue
		}
		switch o.Kind {
		case OpMigrate:
			node := o.Target
			if o.MigState == "aborted" {
				node = o.From
			}
			link(o.Actor, o.OldToken, o.Token, node)
		case OpIncr, OpGet, OpPlace, OpLookup:
			if o.Token != 0 {
				ti := ts.get(o.Actor, o.Token)
				if ti.Node == "" {
					ti.Node = o.Owner
				}
			}
		}
	}
	for _, a := range h.Activations {
		if a.Kind != "activate" || a.Token == 0 {
			continue
		}
		ti := ts.get(a.Actor, a.Token)
		if ti.Node == "" {
			ti.Node = a.Node
		}
		if !ti.HasInit || a.Mono < ti.FirstAct {
			ti.FirstAct, ti.InitValue, ti.HasInit = a.Mono, a.Value, true
		}
	}
	addPlacement := func(p PlacementBrief) {
		ti := ts.get(p.Actor, p.Token)
		if ti.Node == "" {
			ti.Node = p.Node
		}
		if p.Migration != 0 {
			ti.Migrated = true
		}
	}
	for _, s := range h.Snapshots {
		for _, p := range s.Placements {
			addPlacement(p)
		}
	}
	if h.Final != nil {
		for _, ps := range h.Final.Placements {
			for _, p := range ps {
				addPlacement(p)
			}
		}
	}
	// A migration's record may be missing (the FSM keeps the last 256):
	// a token known to be a continuation, or activated with state, continues
	// the actor's previous token.
	for actor, m := range ts.byActor {
		toks := ts.Sorted(actor)
		for i, t := range toks {
			ti := m[t]
			if ti.Parent != 0 || i == 0 {
				continue
			}
			if ti.Migrated || (ti.HasInit && ti.InitValue != 0) {
				ti.Parent = toks[i-1]
			}
		}
	}
	return ts
}
