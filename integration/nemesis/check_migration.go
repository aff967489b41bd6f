package nemesis

import (
	"fmt"
	"sort"
)

// CheckMigrationAtomicity (G7, MigrationAtomicity, MigrationRollback, Source
// first): every migration ends committed or aborted, never both and never
// neither; the actor comes up with exactly the state its source handed
// over; and no counter is left stranded after healing.
//
//   - After settling, no server lists a running migration, and every
//     migrate call that returned says committed or aborted.
//   - Servers agree on how each migration ended.
//   - A committed migration's target activates the new token with the value
//     the source deactivated the old token with; an abort back to the
//     source reactivates it with that same value.
//   - Every counter answers the final read (it is placed somewhere and can
//     run: never nowhere).
func CheckMigrationAtomicity(h *History) Result {
	var r Result
	ended := map[uint64]MigrationRec{}
	var ids []uint64
	for _, m := range h.Migrations {
		if m.State != "committed" && m.State != "aborted" {
			r.violate(fmt.Sprintf("migration %d of %s (%s→%s) is still %q on %s after the cluster settled", m.ID, m.Actor, m.From, m.To, m.State, m.Server), nil)
			continue
		}
		if p, ok := ended[m.ID]; ok {
			if p.State != m.State || p.NewToken != m.NewToken {
				r.violate(fmt.Sprintf("migration %d of %s: %s says %s (token %d), %s says %s (token %d)", m.ID, m.Actor, p.Server, p.State, p.NewToken, m.Server, m.State, m.NewToken), nil)
			}
			continue
		}
		ended[m.ID] = m
		ids = append(ids, m.ID)
	}
	acked := 0
	for _, o := range h.Ops {
		if o.Kind != OpMigrate || o.Result != ResultOK {
			continue
		}
		acked++
		if o.MigState != "committed" && o.MigState != "aborted" {
			r.violate(fmt.Sprintf("migrate of %s returned state %q", o.Actor, o.MigState), []int64{o.ID})
			continue
		}
		if m, ok := ended[o.MigID]; ok && m.State != o.MigState {
			r.violate(fmt.Sprintf("migrate of %s returned %s but the servers recorded %s", o.Actor, o.MigState, m.State), []int64{o.ID})
		}
	}

	// State handed over: deactivation value of the old token on the source
	// = activation value of the new token.
	deact := map[string]Activation{} // actor/token/node → last deactivation
	act := map[string]Activation{}   // actor/token/node → first activation
	for _, a := range h.Activations {
		k := fmt.Sprintf("%s/%d/%s", a.Actor, a.Token, a.Node)
		switch a.Kind {
		case "deactivate":
			if p, ok := deact[k]; !ok || a.Mono > p.Mono {
				deact[k] = a
			}
		case "activate":
			if p, ok := act[k]; !ok || a.Mono < p.Mono {
				act[k] = a
			}
		}
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	verified := 0
	for _, id := range ids {
		m := ended[id]
		if m.NewToken == 0 {
			continue
		}
		node := m.To
		if m.State == "aborted" {
			node = m.From
		}
		src, ok1 := deact[fmt.Sprintf("%s/%d/%s", m.Actor, m.OldToken, m.From)]
		dst, ok2 := act[fmt.Sprintf("%s/%d/%s", m.Actor, m.NewToken, node)]
		if !ok1 || !ok2 {
			continue // not activated (yet), or the source's log was cut by a crash
		}
		verified++
		if src.Value != dst.Value {
			r.violate(fmt.Sprintf("migration %d of %s %s: %s handed over value %d (token %d) but %s activated token %d with %d",
				id, m.Actor, m.State, m.From, src.Value, m.OldToken, node, m.NewToken, dst.Value), nil,
				fmt.Sprintf("deactivate %+v", src), fmt.Sprintf("activate %+v", dst))
		}
		if dst.Mono < src.Mono {
			r.violate(fmt.Sprintf("migration %d of %s: %s activated token %d before %s deactivated token %d", id, m.Actor, node, m.NewToken, m.From, m.OldToken), nil,
				fmt.Sprintf("deactivate %+v", src), fmt.Sprintf("activate %+v", dst))
		}
	}

	// Never nowhere: every counter answers its final read.
	finals := 0
	lastFinal := map[string]Op{}
	for _, o := range h.Ops {
		if o.Process == FinalProcess {
			lastFinal[o.Actor] = o
		}
	}
	var actors []string
	for a := range lastFinal {
		actors = append(actors, a)
	}
	sort.Strings(actors)
	for _, a := range actors {
		o := lastFinal[a]
		finals++
		if o.Result != ResultOK {
			r.violate(fmt.Sprintf("%s is stranded: the final read after healing failed", a), []int64{o.ID})
		}
	}
	r.note("%d migrations ended (%d acknowledged), %d state handovers verified, %d final reads", len(ids), acked, verified, finals)
	return r
}
