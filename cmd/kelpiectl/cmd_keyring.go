package main

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	cluster "github.com/kelpie/cluster"
)

// keyring: the gossip encryption keys (GET/POST/PUT/DELETE /v1/keyring).

func keyringCommand() *cli.Command {
	op := func(name, usage, example string) *cli.Command {
		return &cli.Command{
			Name:      name,
			Usage:     usage,
			ArgsUsage: "KEY",
			UsageText: "kelpiectl [global flags] keyring " + name + " KEY\n\nExample:\n   " + example,
			Action:    func(c *cli.Context) error { return cmdKeyring(c, name) },
		}
	}
	return &cli.Command{
		Name:  "keyring",
		Usage: "list and rotate the gossip encryption keys on every node",
		UsageText: "kelpiectl [global flags] keyring list\n" +
			"kelpiectl [global flags] keyring install|use|remove KEY",
		Description: "Keys are base64 AES keys (16, 24 or 32 bytes; e.g. openssl rand -base64 32).\n" +
			"Rotation: install the new key everywhere, use it (it becomes primary), then\n" +
			"remove the old one. Each operation reaches every node through gossip; if\n" +
			"any node fails, kelpiectl prints its message and exits 1. Nodes must run\n" +
			"with encryption (kelpied --encrypt).",
		Action: func(c *cli.Context) error {
			_ = cli.ShowSubcommandHelp(c)
			return usagef("keyring: need a subcommand: list, install, use or remove")
		},
		Subcommands: []*cli.Command{
			{
				Name:      "list",
				Usage:     "list the installed keys and how many nodes have and use each",
				UsageText: "kelpiectl [global flags] keyring list\n\nExample:\n   kelpiectl keyring list --format json",
				Action:    func(c *cli.Context) error { return cmdKeyring(c, "list") },
			},
			op("install", "install KEY on every node (not yet used for sending)", "kelpiectl keyring install \"$(openssl rand -base64 32)\""),
			op("use", "make the installed KEY the primary key on every node", "kelpiectl keyring use 3q2+7w...="),
			op("remove", "remove KEY (not the primary one) from every node", "kelpiectl keyring remove 3q2+7w...="),
		},
	}
}

func cmdKeyring(c *cli.Context, op string) error {
	key := ""
	if op != "list" {
		args, err := needArgs(c, "KEY")
		if err != nil {
			return err
		}
		key = args[0]
	}
	g, cl, err := setup(c)
	if err != nil {
		return err
	}
	res, err := call(c, g, func(ctx context.Context) (cluster.KeyringResponse, error) { return cl.Keyring(ctx, op, key) })
	if err != nil {
		return err
	}
	if g.format == "json" {
		err = printJSON(res)
	} else {
		err = printKeyring(op, res)
	}
	if err != nil {
		return err
	}
	if res.NumErr > 0 {
		var msgs []string
		for _, node := range sortedKeys(res.Messages) {
			msgs = append(msgs, node+": "+res.Messages[node])
		}
		return fmt.Errorf("keyring %s failed on %d of %d nodes: %s", op, res.NumErr, res.NumNodes, orDash(strings.Join(msgs, "; ")))
	}
	return nil
}

func printKeyring(op string, r cluster.KeyringResponse) error {
	if op != "list" {
		fmt.Printf("%s: %d of %d nodes answered\n", op, r.NumResp-r.NumErr, r.NumNodes)
		return nil
	}
	w := newTable()
	row(w, "KEY", "INSTALLED", "PRIMARY")
	for _, k := range sortedKeys(r.Keys) {
		row(w, k, fmt.Sprintf("%d/%d", r.Keys[k], r.NumNodes), fmt.Sprintf("%d/%d", r.PrimaryKeys[k], r.NumNodes))
	}
	return w.Flush()
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
