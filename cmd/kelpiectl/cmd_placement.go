package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	cluster "github.com/kelpie/cluster"
)

// Placement verbs: place, lookup, placements, release, invoke.

func placeCommand() *cli.Command {
	return &cli.Command{
		Name:      "place",
		Usage:     "place an actor (or show where it already is)",
		ArgsUsage: "ACTOR",
		UsageText: "kelpiectl [global flags] place ACTOR [--prefer NODE] [--zone ZONE] [--label KEY=VALUE]...\n\n" +
			"Examples:\n   kelpiectl place cart-42\n" +
			"   kelpiectl place cart-42 --prefer n3 --label tier=edge --format json",
		Description: "The leader picks an Active node with capacity that matches the constraints\n" +
			"(least loaded; --prefer wins if eligible) and commits the placement with a\n" +
			"fencing token. An actor that is already placed keeps its placement\n" +
			"(\"Existing yes\"). Exit 1 when no node matches (no eligible node, no capacity)\n" +
			"or without quorum.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "prefer", Usage: "use `NODE` if it is eligible"},
			&cli.StringFlag{Name: "zone", Usage: "only nodes in `ZONE`"},
			&cli.StringSliceFlag{Name: "label", Usage: "only nodes carrying label `KEY=VALUE` (repeatable)"},
		},
		Action: cmdPlace,
	}
}

func cmdPlace(c *cli.Context) error {
	args, err := needArgs(c, "ACTOR")
	if err != nil {
		return err
	}
	opts := cluster.PlaceOptions{Prefer: c.String("prefer"), Zone: c.String("zone")}
	for _, kv := range c.StringSlice("label") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return usagef("--label %q: need KEY=VALUE", kv)
		}
		if opts.Labels == nil {
			opts.Labels = map[string]string{}
		}
		opts.Labels[k] = v
	}
	g, cl, err := setup(c)
	if err != nil {
		return err
	}
	res, err := call(c, g, func(ctx context.Context) (cluster.PlaceResult, error) { return cl.Place(ctx, args[0], opts) })
	if err != nil {
		return err
	}
	if g.format == "json" {
		return printJSON(res)
	}
	return printPlace(res)
}

func lookupCommand() *cli.Command {
	return &cli.Command{
		Name:      "lookup",
		Usage:     "show where an actor is placed (exit 1 if it is not)",
		ArgsUsage: "ACTOR",
		UsageText: "kelpiectl [global flags] lookup ACTOR [--consistent]\n\n" +
			"Examples:\n   kelpiectl lookup cart-42\n   kelpiectl lookup cart-42 --consistent --format json",
		Description: "Without --consistent the node answers from its replica (fast; the answer\n" +
			"says which Raft index it reflects). With --consistent the leader first\n" +
			"confirms it still leads, so the answer is the latest committed placement.",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "consistent", Usage: "read through the leader after it confirms its leadership"},
		},
		Action: cmdLookup,
	}
}

func cmdLookup(c *cli.Context) error {
	args, err := needArgs(c, "ACTOR")
	if err != nil {
		return err
	}
	g, cl, err := setup(c)
	if err != nil {
		return err
	}
	res, err := call(c, g, func(ctx context.Context) (cluster.LookupResult, error) {
		return cl.Lookup(ctx, args[0], c.Bool("consistent"), 0)
	})
	if err != nil {
		return err
	}
	if !res.Found {
		return fmt.Errorf("actor %q is not placed (as of index %d)", args[0], res.Index)
	}
	if g.format == "json" {
		return printJSON(res)
	}
	return printLookup(res)
}

func placementsCommand() *cli.Command {
	return &cli.Command{
		Name:  "placements",
		Usage: "list committed placements, all or those on one node",
		UsageText: "kelpiectl [global flags] placements [--node NODE]\n\n" +
			"Examples:\n   kelpiectl placements\n   kelpiectl placements --node n3 --format json",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "node", Usage: "only actors placed on `NODE`"},
		},
		Action: cmdPlacements,
	}
}

func cmdPlacements(c *cli.Context) error {
	g, cl, err := setup(c)
	if err != nil {
		return err
	}
	l, err := call(c, g, func(ctx context.Context) (cluster.PlacementList, error) { return cl.Placements(ctx, c.String("node")) })
	if err != nil {
		return err
	}
	if g.format == "json" {
		return printJSON(l)
	}
	return printPlacements(l)
}

func releaseCommand() *cli.Command {
	return &cli.Command{
		Name:      "release",
		Usage:     "remove an actor's placement (its owner deactivates it first)",
		ArgsUsage: "ACTOR",
		UsageText: "kelpiectl [global flags] release ACTOR\n\n" +
			"Example:\n   kelpiectl release cart-42",
		Description: "The owner deactivates the actor before the release is committed, so the\n" +
			"actor is never live anywhere once released. Exit 1 if the actor is not\n" +
			"placed or its owner cannot be reached.",
		Action: cmdRelease,
	}
}

// releaseAnswer is the API document of DELETE /v1/placements/{actor}.
type releaseAnswer struct {
	Status string `json:"status"`
}

func cmdRelease(c *cli.Context) error {
	args, err := needArgs(c, "ACTOR")
	if err != nil {
		return err
	}
	g, cl, err := setup(c)
	if err != nil {
		return err
	}
	if _, err := call(c, g, func(ctx context.Context) (struct{}, error) { return struct{}{}, cl.Release(ctx, args[0]) }); err != nil {
		return err
	}
	if g.format == "json" {
		return printJSON(releaseAnswer{Status: "released"})
	}
	fmt.Printf("released %s\n", args[0])
	return nil
}

func invokeCommand() *cli.Command {
	return &cli.Command{
		Name:      "invoke",
		Usage:     "send a JSON request to an actor on its owner (placing it first if needed)",
		ArgsUsage: "ACTOR JSON",
		UsageText: "kelpiectl [global flags] invoke ACTOR JSON\n\n" +
			"Examples (kelpied's demo counter host):\n" +
			"   kelpiectl invoke cart-42 '{\"op\":\"incr\"}'\n" +
			"   kelpiectl invoke cart-42 '{\"op\":\"incr\",\"by\":5}'\n" +
			"   kelpiectl invoke cart-42 '{\"op\":\"get\"}' --format json",
		Description: "Any node routes the request to the actor's owner, which runs it under the\n" +
			"placement's fencing token. A request is retried only when it surely did not\n" +
			"run; otherwise the error says the outcome is unknown.",
		Action: cmdInvoke,
	}
}

func cmdInvoke(c *cli.Context) error {
	args, err := needArgs(c, "ACTOR", "JSON")
	if err != nil {
		return err
	}
	if !json.Valid([]byte(args[1])) {
		return usagef("invoke: request %q is not JSON (quote it: '{\"op\":\"incr\"}')", args[1])
	}
	g, cl, err := setup(c)
	if err != nil {
		return err
	}
	res, err := call(c, g, func(ctx context.Context) (cluster.InvokeResult, error) {
		return cl.Invoke(ctx, args[0], json.RawMessage(args[1]))
	})
	if err != nil {
		return err
	}
	if g.format == "json" {
		return printJSON(res)
	}
	return printInvoke(args[0], res)
}
