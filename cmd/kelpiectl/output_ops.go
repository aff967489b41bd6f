package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	cluster "github.com/kelpie/cluster"
)

// Tables of the placement, migration and operator verbs.

func migrationRef(id uint64) string {
	if id == 0 {
		return ""
	}
	return u64(id)
}

func printPlace(r cluster.PlaceResult) error {
	w := newTable()
	p := r.Placement
	row(w, "Actor", p.Actor)
	row(w, "Node", p.Node)
	row(w, "Token", u64(p.Token))
	row(w, "State", p.State.String())
	row(w, "Incarnation", u64(p.Incarnation))
	row(w, "Existing", yesNo(r.Existing))
	return w.Flush()
}

func printLookup(r cluster.LookupResult) error {
	w := newTable()
	p := r.Placement
	row(w, "Actor", p.Actor)
	row(w, "Node", p.Node)
	row(w, "Token", u64(p.Token))
	row(w, "State", p.State.String())
	row(w, "Incarnation", u64(p.Incarnation))
	row(w, "Migration", migrationRef(p.Migration))
	row(w, "As of index", u64(r.Index))
	return w.Flush()
}

func printPlacements(l cluster.PlacementList) error {
	w := newTable()
	row(w, "ACTOR", "NODE", "TOKEN", "STATE", "INC", "MIGRATION")
	for _, p := range l.Placements {
		row(w, p.Actor, p.Node, u64(p.Token), p.State.String(), u64(p.Incarnation), migrationRef(p.Migration))
	}
	if err := w.Flush(); err != nil {
		return err
	}
	noun := "placements"
	if len(l.Placements) == 1 {
		noun = "placement"
	}
	fmt.Printf("\n%d %s as of index %d\n", len(l.Placements), noun, l.Index)
	return nil
}

func printInvoke(actor string, r cluster.InvokeResult) error {
	body := string(r.Body)
	var compact bytes.Buffer
	if json.Compact(&compact, r.Body) == nil {
		body = compact.String()
	}
	w := newTable()
	row(w, "Actor", actor)
	row(w, "Node", r.Node)
	row(w, "Token", u64(r.Token))
	row(w, "Answer", body)
	return w.Flush()
}

func printMigration(o cluster.MigrationOutcome) error {
	w := newTable()
	row(w, "Migration", u64(o.ID))
	row(w, "Actor", o.Actor)
	row(w, "From", o.From)
	row(w, "To", o.To)
	row(w, "State", o.State)
	row(w, "Old token", u64(o.OldToken))
	row(w, "New token", tokenOrDash(o.NewToken))
	row(w, "State bytes", strconv.FormatInt(o.Bytes, 10))
	row(w, "Duration", o.Duration.Round(time.Millisecond).String())
	row(w, "Reason", o.Reason)
	return w.Flush()
}

func tokenOrDash(t uint64) string {
	if t == 0 {
		return ""
	}
	return u64(t)
}

func printMigrations(l []cluster.MigrationInfo) error {
	w := newTable()
	row(w, "ID", "ACTOR", "FROM", "TO", "STATE", "OLD TOKEN", "NEW TOKEN", "BYTES", "STARTED", "DURATION", "REASON")
	for _, m := range l {
		started, took := "", ""
		if m.StartedAt > 0 {
			started = time.Unix(0, m.StartedAt).Format("2006-01-02 15:04:05")
			if m.EndedAt >= m.StartedAt {
				took = time.Duration(m.EndedAt - m.StartedAt).Round(time.Millisecond).String()
			}
		}
		row(w, u64(m.ID), m.Actor, m.From, m.To, m.State, u64(m.OldToken), tokenOrDash(m.NewToken),
			strconv.FormatInt(m.Bytes, 10), started, took, m.Reason)
	}
	return w.Flush()
}

func printDrain(r cluster.DrainResult) error {
	w := newTable()
	row(w, "Node", r.Node)
	row(w, "Moved", strconv.Itoa(r.Moved))
	row(w, "Still there", strconv.Itoa(len(r.Failed)))
	if len(r.Failed) > 0 {
		row(w, "Actors left", strings.Join(r.Failed, ", "))
	}
	row(w, "Duration", r.Duration)
	return w.Flush()
}

func printSnapshotSaved(s snapshotSaved) error {
	w := newTable()
	row(w, "File", s.File)
	row(w, "Bytes", strconv.FormatInt(s.Bytes, 10))
	row(w, "SHA-256", s.SHA256)
	row(w, "Epoch", u64(s.Snapshot.Epoch))
	row(w, "View index", u64(s.Snapshot.Index))
	row(w, "Applied index", u64(s.Snapshot.Applied))
	row(w, "Members", fmt.Sprintf("%d (%d in the view)", s.Snapshot.Members, s.Snapshot.InView))
	row(w, "Placements", strconv.Itoa(s.Snapshot.Placements))
	row(w, "Orphans", strconv.Itoa(s.Snapshot.Orphans))
	row(w, "Migrations", strconv.Itoa(s.Snapshot.Migrations)+" running")
	return w.Flush()
}

func printSnapshotRestored(file string, r cluster.SnapshotRestoreResult) error {
	w := newTable()
	row(w, "File", file)
	row(w, "Epoch", fmt.Sprintf("%d (snapshot: %d)", r.Restored.Epoch, r.Source.Epoch))
	row(w, "Index", fmt.Sprintf("%d (snapshot: %d)", r.Restored.Index, r.Source.Index))
	row(w, "Members", fmt.Sprintf("%d (%d in the view)", r.Restored.Members, r.Restored.InView))
	row(w, "Rebound", strings.Join(r.Rebound, ", "))
	row(w, "Placements", strconv.Itoa(r.Restored.Placements))
	row(w, "Orphans", strconv.Itoa(r.Restored.Orphans))
	row(w, "Aborted migrations", strings.Join(r.AbortedMigrations, ", "))
	row(w, "Deactivated", strings.Join(r.Deactivated, ", "))
	if len(r.NotDeactivated) > 0 {
		row(w, "Not deactivated", strings.Join(r.NotDeactivated, ", "))
	}
	return w.Flush()
}
