package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	cluster "github.com/kelpie/cluster"
	"github.com/kelpie/cluster/consensus"
)

// watchWait is the blocking-query wait of `view --watch`.
const watchWait = 30 * time.Second

func commands() []*cli.Command {
	return []*cli.Command{
		{
			Name:      "status",
			Usage:     "show the node's own status: role, readiness, leader, term, epoch, commit index, voters and their health, members, lease",
			UsageText: "kelpiectl [global flags] status\n\nExamples:\n   kelpiectl status\n   kelpiectl --addr http://127.0.0.11:7500 status --format json",
			Description: "The table adds, from other endpoints, the members by committed status\n" +
				"(/v1/members), the voters' health (/v1/voters, asked of the leader) and\n" +
				"the node's membership lease (/metrics); the JSON output is the /v1/status\n" +
				"document unchanged. When the node knows no leader (cut off from the\n" +
				"majority, or an election in progress), a warning on stderr says how many\n" +
				"voters it reaches and that its committed view may be stale; the exit\n" +
				"code stays 0.",
			Action: cmdStatus,
		},
		{
			Name:  "members",
			Usage: "list members: gossip and committed status side by side",
			UsageText: "kelpiectl [global flags] members [--role server|client] [--status STATUS]\n\n" +
				"Examples:\n   kelpiectl members\n   kelpiectl members --role server --status active,failed --format json",
			Description: "STATUS is a committed status: none, joining, active, leaving, failed or left.\n" +
				"The JSON output is the /v1/members document with only the matching rows.\n" +
				"When the node knows no leader, its committed statuses may be stale: the\n" +
				"table (or document) is still printed, then kelpiectl exits 1 with, e.g.,\n" +
				"\"s1 knows no leader (Raft state Follower): no quorum: 1 of 3 voters\n" +
				"reachable; its committed view (epoch 7) may be stale\".",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "role", Usage: "only members with this `ROLE` (server or client)"},
				&cli.StringSliceFlag{Name: "status", Usage: "only members with this committed `STATUS` (repeatable or comma-separated)"},
			},
			Action: cmdMembers,
		},
		{
			Name:  "view",
			Usage: "show the committed membership view (epoch, index, every record)",
			UsageText: "kelpiectl [global flags] view [--watch]\n\n" +
				"Examples:\n   kelpiectl view\n   kelpiectl view --watch --format json   # one JSON document per line until Ctrl-C",
			Description: "With --watch, kelpiectl follows the view with blocking queries\n" +
				"(/v1/view?index=N&wait=30s) and prints the view once per committed change\n" +
				"until interrupted (exit 0). Errors after the first answer are reported on\n" +
				"stderr and retried.",
			Flags: []cli.Flag{
				&cli.BoolFlag{Name: "watch", Aliases: []string{"w"}, Usage: "print every committed view change until Ctrl-C"},
			},
			Action: cmdView,
		},
		{
			Name:      "leader",
			Usage:     "show the current Raft leader (exit 1 when none is known, saying why)",
			UsageText: "kelpiectl [global flags] leader\n\nExample:\n   kelpiectl leader --format json",
			Description: "With no leader known, the JSON document (known: false) is still printed;\n" +
				"the message on stderr says why, as far as the node can tell (e.g.\n" +
				"\"no quorum: 1 of 3 voters reachable\" on a server cut off from the majority).",
			Action: cmdLeader,
		},
		votersCommand(),
		placeCommand(),
		lookupCommand(),
		placementsCommand(),
		releaseCommand(),
		invokeCommand(),
		migrateCommand(),
		migrationsCommand(),
		drainCommand(),
		leaveCommand(),
		snapshotCommand(),
		keyringCommand(),
		completionCommand(),
		{
			Name:  "version",
			Usage: "print the kelpiectl version and the version of the agent at --addr",
			UsageText: "kelpiectl [global flags] version\n\n" +
				"Example:\n   kelpiectl version --format json\n\n" +
				"An unreachable agent is reported but is not an error.",
			Action: cmdVersion,
		},
	}
}

// setup resolves the global flags and builds a client.
func setup(c *cli.Context) (globals, *cluster.Client, error) {
	g, err := getGlobals(c)
	if err != nil {
		return g, nil, err
	}
	hc, err := httpClient(g.tls)
	if err != nil {
		return g, nil, err
	}
	addr := g.addr
	if g.tls.enabled() && !strings.Contains(addr, "://") {
		addr = "https://" + addr
	}
	cl, err := cluster.NewClient(addr, hc)
	if err != nil {
		return g, nil, usagef("--%s %q: %v", flagAddr, g.addr, err)
	}
	cl.SetToken(g.token)
	return g, cl, nil
}

// clientFor is a client for another node (e.g. the leader) with the same
// settings.
func clientFor(g globals, addr string) (*cluster.Client, error) {
	hc, err := httpClient(g.tls)
	if err != nil {
		return nil, err
	}
	if !strings.Contains(addr, "://") {
		scheme := "http://"
		if g.tls.enabled() || strings.HasPrefix(g.addr, "https://") {
			scheme = "https://"
		}
		addr = scheme + addr
	}
	cl, err := cluster.NewClient(addr, hc)
	if err != nil {
		return nil, err
	}
	cl.SetToken(g.token)
	return cl, nil
}

// httpClient builds the HTTP client, with TLS settings if given.
func httpClient(t tlsFlags) (*http.Client, error) {
	if !t.enabled() {
		return &http.Client{}, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if t.caCert != "" || t.serverNameSet {
		cfg.ServerName = t.serverName
	}
	if t.caCert != "" {
		pem, err := os.ReadFile(t.caCert)
		if err != nil {
			return nil, usagef("--%s: %v", flagCACert, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, usagef("--%s %s: no PEM certificate in it", flagCACert, t.caCert)
		}
		cfg.RootCAs = pool
	}
	if t.clientCert != "" {
		cert, err := tls.LoadX509KeyPair(t.clientCert, t.clientKey)
		if err != nil {
			return nil, usagef("--%s/--%s: %v", flagClientCert, flagClientKey, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = cfg
	return &http.Client{Transport: tr}, nil
}

// call runs one request under --timeout.
func call[T any](c *cli.Context, g globals, f func(context.Context) (T, error)) (T, error) {
	ctx, cancel := context.WithTimeout(c.Context, g.timeout)
	defer cancel()
	v, err := f(ctx)
	if err != nil {
		return v, opError(c.Context, g, err)
	}
	return v, nil
}

// opError turns a client error into the message a user should see: the API's
// own error text, or what went wrong reaching the node.
func opError(ctx context.Context, g globals, err error) error {
	var ae *cluster.APIError
	switch {
	case errors.As(err, &ae):
		switch {
		case ae.StatusCode == http.StatusUnauthorized, ae.StatusCode == http.StatusForbidden:
			return fmt.Errorf("access denied by %s: %s (check --token or KELPIE_TOKEN)", g.addr, ae.Error())
		case ae.StatusCode == http.StatusBadRequest && strings.Contains(ae.Error(), "HTTP request to an HTTPS server"):
			return fmt.Errorf("%s serves HTTPS: use an https:// address or --ca-cert", g.addr)
		}
		return errors.New(ae.Error())
	case ctx.Err() != nil:
		return errors.New("interrupted")
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%s did not answer within %s", g.addr, g.timeout)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("cannot reach %s: %v", g.addr, ue.Err)
	}
	return err
}

func cmdStatus(c *cli.Context) error {
	g, cl, err := setup(c)
	if err != nil {
		return err
	}
	s, err := call(c, g, cl.Status)
	if err != nil {
		return err
	}
	var x extras
	if g.format == "json" {
		err = printJSON(s)
	} else {
		x = statusExtras(c, g, cl, s)
		err = printStatus(s, x)
	}
	if err != nil {
		return err
	}
	if msg := leaderless(c, g, cl, s, x.members); msg != "" {
		warn(msg)
	}
	return nil
}

func cmdMembers(c *cli.Context) error {
	role := c.String("role")
	if role != "" && role != string(consensus.RoleServer) && role != string(consensus.RoleClient) {
		return usagef("--role %q: need server or client", role)
	}
	var statuses []consensus.Status
	for _, s := range c.StringSlice("status") {
		for _, part := range strings.Split(s, ",") {
			part = strings.ToLower(strings.TrimSpace(part))
			if part == "" {
				continue
			}
			st, err := consensus.ParseStatus(part)
			if err != nil {
				return usagef("--status %q: need none, joining, active, leaving, failed or left", part)
			}
			statuses = append(statuses, st)
		}
	}
	g, cl, err := setup(c)
	if err != nil {
		return err
	}
	m, err := call(c, g, cl.Members)
	if err != nil {
		return err
	}
	stale := leaderless(c, g, cl, nil, m)
	rows := m.Members[:0:0]
	for _, r := range m.Members {
		if role != "" && string(r.Role) != role {
			continue
		}
		if len(statuses) > 0 && !slices.Contains(statuses, r.CommittedStatus) {
			continue
		}
		rows = append(rows, r)
	}
	if rows == nil {
		rows = []cluster.MemberRow{}
	}
	m.Members = rows
	if g.format == "json" {
		err = printJSON(m)
	} else {
		err = printMembers(m)
	}
	if err == nil && stale != "" {
		err = errors.New(stale)
	}
	return err
}

func cmdView(c *cli.Context) error {
	g, cl, err := setup(c)
	if err != nil {
		return err
	}
	if !c.Bool("watch") {
		v, err := call(c, g, func(ctx context.Context) (consensus.View, error) { return cl.View(ctx, 0, 0) })
		if err != nil {
			return err
		}
		if g.format == "json" {
			return printJSON(v)
		}
		return printView(v, false)
	}
	return watchView(c, g, cl)
}

// watchView prints the current view, then every committed change, until the
// context ends (Ctrl-C), which is a clean exit.
func watchView(c *cli.Context, g globals, cl *cluster.Client) error {
	ctx := c.Context
	var last uint64
	first := true
	backoff := time.Second
	for {
		rctx, cancel := context.WithTimeout(ctx, watchWait+g.timeout)
		v, err := cl.View(rctx, last, watchWait)
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			err = opError(ctx, g, err)
			if first {
				return err
			}
			fmt.Fprintf(os.Stderr, "%s: view --watch: %v; retrying in %s\n", appName, err, backoff)
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
			backoff = min(2*backoff, 10*time.Second)
			continue
		}
		backoff = time.Second
		if !first && v.Index <= last {
			continue // the wait ran out without a change
		}
		first, last = false, v.Index
		if g.format == "json" {
			err = printJSONLine(v)
		} else {
			err = printView(v, true)
		}
		if err != nil {
			return err
		}
	}
}

func cmdLeader(c *cli.Context) error {
	g, cl, err := setup(c)
	if err != nil {
		return err
	}
	l, err := call(c, g, cl.Leader)
	if err != nil {
		return err
	}
	if g.format == "json" {
		if err := printJSON(l); err != nil {
			return err
		}
	} else if l.Known {
		if err := printLeader(l); err != nil {
			return err
		}
	}
	if !l.Known {
		if msg := leaderless(c, g, cl, nil, nil); msg != "" {
			return errors.New(msg)
		}
		return errors.New("no leader known")
	}
	return nil
}

func cmdVoters(c *cli.Context) error {
	g, cl, err := setup(c)
	if err != nil {
		return err
	}
	v, err := call(c, g, cl.Voters)
	if err != nil {
		return err
	}
	if g.format == "json" {
		return printJSON(v)
	}
	return printVoters(v)
}

// versionInfo is the JSON output of `version`.
type versionInfo struct {
	Kelpiectl  string `json:"kelpiectl"`
	Agent      string `json:"agent,omitempty"`
	NodeID     string `json:"node_id,omitempty"`
	Addr       string `json:"addr"`
	AgentError string `json:"agent_error,omitempty"`
}

func cmdVersion(c *cli.Context) error {
	g, cl, err := setup(c)
	if err != nil {
		return err
	}
	vi := versionInfo{Kelpiectl: version, Addr: g.addr}
	if s, err := call(c, g, cl.Status); err != nil {
		vi.AgentError = err.Error()
	} else {
		vi.Agent, vi.NodeID = s.Version, s.NodeID
		if vi.Agent == "" {
			vi.Agent = "unknown"
		}
	}
	if g.format == "json" {
		return printJSON(vi)
	}
	fmt.Printf("kelpiectl %s\n", vi.Kelpiectl)
	if vi.AgentError != "" {
		fmt.Printf("agent     unknown (%s)\n", vi.AgentError)
	} else {
		fmt.Printf("agent     %s (node %s at %s)\n", vi.Agent, vi.NodeID, vi.Addr)
	}
	return nil
}
