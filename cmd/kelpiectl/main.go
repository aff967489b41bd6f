// Command kelpiectl is the command-line client of a kelpie cluster. It talks
// to one node's HTTP API (--addr) through cluster.Client and prints the
// answers as a table or as the API's JSON documents.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
)

// version is the build version, set with
//
//	go build -ldflags "-X main.version=v1.2.3" ./cmd/kelpiectl
var version = "dev"

// Exit codes scripts can rely on.
const (
	exitOK     = 0
	exitFailed = 1 // the operation failed (unreachable node, API error, no leader, ...)
	exitUsage  = 2 // invalid command, flag or argument
)

const appName = "kelpiectl"

// Global flag names. They may be given before or after the command.
const (
	flagAddr    = "addr"
	flagToken   = "token"
	flagTimeout = "timeout"
	flagFormat  = "format"
)

const (
	defaultAddr    = "http://127.0.0.1:7500"
	defaultTimeout = 10 * time.Second
)

// usageError marks an error in how kelpiectl was invoked (exit 2).
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return &usageError{fmt.Errorf(format, args...)}
}

func onUsageError(_ *cli.Context, err error, _ bool) error { return &usageError{err} }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string) int {
	err := newApp().RunContext(ctx, args)
	if err == nil {
		return exitOK
	}
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(os.Stderr, "%s: %v\nRun '%s --help' for usage.\n", appName, ue.err, appName)
		return exitUsage
	}
	fmt.Fprintf(os.Stderr, "%s: %v\n", appName, err)
	return exitFailed
}

// globalFlags returns fresh flag values; hidden copies (without environment
// variables) are added to every command so that flags work after the verb
// too ("kelpiectl members --format json").
func globalFlags(hidden bool) []cli.Flag {
	env := func(name string) []string {
		if hidden {
			return nil
		}
		return []string{name}
	}
	return []cli.Flag{
		&cli.StringFlag{Name: flagAddr, Value: defaultAddr, EnvVars: env("KELPIE_HTTP_ADDR"), Hidden: hidden,
			Usage: "HTTP API address of any node (`URL` or host:port)"},
		&cli.StringFlag{Name: flagToken, EnvVars: env("KELPIE_TOKEN"), Hidden: hidden,
			Usage: "access `TOKEN` sent with every request"},
		&cli.DurationFlag{Name: flagTimeout, Value: defaultTimeout, Hidden: hidden,
			Usage: "wait at most `DURATION` for each answer"},
		&cli.StringFlag{Name: flagFormat, Value: "table", Hidden: hidden,
			Usage: "output `FORMAT`: table or json (the API document)"},
	}
}

const appDescription = `kelpiectl queries a kelpie cluster through the HTTP API of any node.
Global flags may be given before or after the command.

Examples:
   kelpiectl members
   kelpiectl --addr http://127.0.0.11:7500 members --status active --format json
   KELPIE_HTTP_ADDR=10.0.0.1:7500 kelpiectl view --watch

Exit codes:
   0  success
   1  the operation failed: the node is unreachable, the API answered an
      error (e.g. "no quorum: 1 of 3 voters reachable"), or no leader is known;
      the message is printed on stderr
   2  usage error: unknown command or flag, invalid flag value`

func newApp() *cli.App {
	cmds := commands()
	for _, c := range cmds {
		c.Flags = append(c.Flags, globalFlags(true)...)
		c.OnUsageError = onUsageError
		if c.Action != nil {
			c.Action = noArgs(c.Action)
		}
	}
	return &cli.App{
		Name:                 appName,
		HelpName:             appName,
		Usage:                "query and operate a kelpie cluster",
		UsageText:            "kelpiectl [global flags] command [command flags]",
		Description:          appDescription,
		Version:              version,
		Flags:                globalFlags(false),
		Commands:             cmds,
		EnableBashCompletion: true,
		OnUsageError:         onUsageError,
		// Exit codes are decided in run.
		ExitErrHandler: func(*cli.Context, error) {},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usagef("unknown command %q", c.Args().First())
			}
			_ = cli.ShowAppHelp(c)
			return usagef("no command given")
		},
	}
}

// noArgs rejects positional arguments: no verb takes any yet.
func noArgs(action cli.ActionFunc) cli.ActionFunc {
	return func(c *cli.Context) error {
		if c.NArg() > 0 {
			return usagef("%s: unexpected arguments %v", c.Command.Name, c.Args().Slice())
		}
		return action(c)
	}
}

// lookup finds the context where a global flag was set explicitly (on the
// command line after or before the verb, or through its environment
// variable); the innermost one wins. Without one it returns c, which yields
// the default.
func lookup(c *cli.Context, name string) *cli.Context {
	for _, cc := range c.Lineage() {
		if cc.Command == nil {
			continue
		}
		for _, n := range cc.LocalFlagNames() {
			if n == name {
				return cc
			}
		}
	}
	return c
}

// globals is the resolved global flags.
type globals struct {
	addr    string
	token   string
	timeout time.Duration
	format  string
}

func getGlobals(c *cli.Context) (globals, error) {
	g := globals{
		addr:    lookup(c, flagAddr).String(flagAddr),
		token:   lookup(c, flagToken).String(flagToken),
		timeout: lookup(c, flagTimeout).Duration(flagTimeout),
		format:  lookup(c, flagFormat).String(flagFormat),
	}
	switch g.format {
	case "table", "json":
	default:
		return g, usagef("--%s %q: need table or json", flagFormat, g.format)
	}
	if g.timeout <= 0 {
		return g, usagef("--%s %s: need a positive duration", flagTimeout, g.timeout)
	}
	if g.addr == "" {
		return g, usagef("--%s is empty", flagAddr)
	}
	return g, nil
}
