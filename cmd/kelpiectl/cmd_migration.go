package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	cluster "github.com/kelpie/cluster"
	"github.com/kelpie/cluster/consensus"
)

// Migration verbs: migrate, migrations, drain.

// Defaults for long operations when --timeout is not given.
const (
	migrateTimeout = 2 * time.Minute
	drainTimeout   = 5 * time.Minute
)

func migrateCommand() *cli.Command {
	return &cli.Command{
		Name:      "migrate",
		Usage:     "move an actor to another node (exit 1 if the migration aborts)",
		ArgsUsage: "ACTOR",
		UsageText: "kelpiectl [global flags] migrate ACTOR --to NODE\n\n" +
			"Examples:\n   kelpiectl migrate cart-42 --to n2\n   kelpiectl migrate cart-42 --to n2 --format json",
		Description: "The leader runs the three-phase migration: the source deactivates the actor\n" +
			"and hands over its final state, the target verifies its checksum and stages\n" +
			"it, and the commit gives the actor a new fencing token on the target. A\n" +
			"migration ends committed or aborted (the actor back on its source); an\n" +
			"aborted one is printed and exits 1. Waits up to 2m unless --timeout is given.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "to", Usage: "target `NODE` (required)"},
		},
		Action: cmdMigrate,
	}
}

func cmdMigrate(c *cli.Context) error {
	args, err := needArgs(c, "ACTOR")
	if err != nil {
		return err
	}
	to := c.String("to")
	if to == "" {
		return usagef("migrate: --to NODE is required")
	}
	g, cl, err := setup(c)
	if err != nil {
		return err
	}
	g.timeout = g.timeoutOr(migrateTimeout)
	out, err := call(c, g, func(ctx context.Context) (cluster.MigrationOutcome, error) { return cl.Migrate(ctx, args[0], to) })
	if err != nil {
		return err
	}
	if g.format == "json" {
		err = printJSON(out)
	} else {
		err = printMigration(out)
	}
	if err != nil {
		return err
	}
	if out.State != consensus.MigrationCommitted {
		return fmt.Errorf("migration %d of %s to %s %s: %s", out.ID, out.Actor, out.To, out.State, orDash(out.Reason))
	}
	return nil
}

func migrationsCommand() *cli.Command {
	return &cli.Command{
		Name:  "migrations",
		Usage: "list running and recently finished migrations",
		UsageText: "kelpiectl [global flags] migrations [--state running|committed|aborted]\n\n" +
			"Examples:\n   kelpiectl migrations\n   kelpiectl migrations --state aborted --format json",
		Description: "The committed state keeps every running migration and the last 256\n" +
			"finished ones, oldest first.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "state", Usage: "only migrations in `STATE`: running, committed or aborted"},
		},
		Action: cmdMigrations,
	}
}

// migrationList is the API document of GET /v1/migrations.
type migrationList struct {
	Migrations []cluster.MigrationInfo `json:"migrations"`
}

func cmdMigrations(c *cli.Context) error {
	state := c.String("state")
	switch state {
	case "", consensus.MigrationRunning, consensus.MigrationCommitted, consensus.MigrationAborted:
	default:
		return usagef("--state %q: need running, committed or aborted", state)
	}
	g, cl, err := setup(c)
	if err != nil {
		return err
	}
	l, err := call(c, g, func(ctx context.Context) ([]cluster.MigrationInfo, error) { return cl.Migrations(ctx, state) })
	if err != nil {
		return err
	}
	if l == nil {
		l = []cluster.MigrationInfo{}
	}
	if g.format == "json" {
		return printJSON(migrationList{Migrations: l})
	}
	return printMigrations(l)
}

func drainCommand() *cli.Command {
	return &cli.Command{
		Name:      "drain",
		Usage:     "migrate every actor off a node (exit 1 if some stay)",
		ArgsUsage: "NODE",
		UsageText: "kelpiectl [global flags] drain NODE [--wait]\n\n" +
			"Examples:\n   kelpiectl drain n3\n   kelpiectl drain n3 --wait --timeout 10m",
		Description: "The leader migrates the node's actors to other nodes (the placement policy\n" +
			"picks them) while new placements avoid the node. Without --wait, kelpiectl\n" +
			"runs one drain pass and reports what moved; actors that could not move\n" +
			"(no other eligible node, a cooldown after a recent migration, a failed\n" +
			"attempt) make it exit 1. With --wait it runs passes, a second apart, until\n" +
			"the node holds no placement at all (new placements may arrive between\n" +
			"passes) or --timeout (default 5m) runs out. On a terminal, progress is\n" +
			"shown while it runs.",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "wait", Usage: "keep draining until the node holds no placement"},
		},
		Action: cmdDrain,
	}
}

// singlePassBudget bounds a drain without --wait on the server.
const singlePassBudget = 2 * time.Second

func cmdDrain(c *cli.Context) error {
	args, err := needArgs(c, "NODE")
	if err != nil {
		return err
	}
	node := args[0]
	g, cl, err := setup(c)
	if err != nil {
		return err
	}
	timeout := g.timeoutOr(drainTimeout)
	ctx, cancel := context.WithTimeout(c.Context, timeout)
	defer cancel()
	start := time.Now()

	prog := newProgress()
	stopWatch := watchDrain(ctx, cl, node, prog, start)
	total := cluster.DrainResult{Node: node}
	for pass := 1; ; pass++ {
		// Leave the server a moment to answer before our own deadline.
		budget := time.Until(deadlineOf(ctx)) - time.Second
		if budget <= 0 {
			break
		}
		if !c.Bool("wait") && budget > singlePassBudget {
			// Without --wait: one short pass; the server retries refused
			// migrations only within it.
			budget = singlePassBudget
		}
		res, err := cl.DrainNode(ctx, node, budget)
		if err != nil {
			stopWatch()
			prog.done()
			if ctx.Err() != nil && c.Context.Err() == nil && total.Moved > 0 {
				return fmt.Errorf("drain of %s: %d actors moved, not finished within %s", node, total.Moved, timeout)
			}
			g.timeout = timeout
			return opError(c.Context, g, err)
		}
		total.Moved += res.Moved
		total.Failed = res.Failed
		if !c.Bool("wait") {
			break
		}
		if len(res.Failed) == 0 {
			// The pass emptied the node; make sure nothing was placed
			// there meanwhile.
			l, err := cl.Placements(ctx, node)
			if err != nil || len(l.Placements) == 0 {
				break
			}
			total.Failed = nil
			for _, p := range l.Placements {
				total.Failed = append(total.Failed, p.Actor)
			}
		}
		// Actors that could not move yet (no eligible target, a cooldown
		// after a recent migration, a failed attempt) get another pass.
		prog.printf("drain %s: pass %d: %d moved so far, %d still there", node, pass, total.Moved, len(total.Failed))
		t := time.NewTimer(time.Second)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
	}
	stopWatch()
	prog.done()
	total.Duration = time.Since(start).Round(time.Millisecond).String()
	if g.format == "json" {
		err = printJSON(total)
	} else {
		err = printDrain(total)
	}
	if err != nil {
		return err
	}
	if len(total.Failed) > 0 {
		return fmt.Errorf("drain of %s incomplete: still there: %s", node, strings.Join(total.Failed, ", "))
	}
	return nil
}

// watchDrain shows, on a terminal, how many actors the node still holds
// while a drain runs. The returned func stops it.
func watchDrain(ctx context.Context, cl *cluster.Client, node string, prog *progress, start time.Time) func() {
	if !prog.on {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
			l, err := cl.Placements(rctx, node)
			rcancel()
			if err == nil {
				prog.printf("draining %s: %d actors left (%s)", node, len(l.Placements), time.Since(start).Round(time.Second))
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return func() { cancel(); <-done }
}

func deadlineOf(ctx context.Context) time.Time {
	if d, ok := ctx.Deadline(); ok {
		return d
	}
	return time.Now().Add(drainTimeout)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
