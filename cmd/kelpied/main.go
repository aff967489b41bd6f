// Command kelpied is the kelpie-cluster agent: it runs one cluster.Node
// (a server with --server, a client otherwise), joins the cluster through
// --join seeds, serves the HTTP API and /metrics, and leaves gracefully on
// SIGINT/SIGTERM.
//
// It only parses flags and wires the library together; all behaviour lives in
// the root package.
package main

import (
	"errors"
	"fmt"
	"os"
	"syscall"

	"github.com/urfave/cli/v2"
)

// version is the build version, set with
//
//	go build -ldflags "-X main.version=v1.2.3" ./cmd/kelpied
var version = "dev"

// Exit codes.
const (
	exitOK      = 0
	exitFailed  = 1 // the agent could not start or run
	exitUsage   = 2 // invalid flags or arguments
	envPrefix   = "KELPIE_"
	appHelpName = "kelpied"
)

// usageError marks an error caused by invalid flags or arguments (exit 2).
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return &usageError{fmt.Errorf(format, args...)}
}

func main() {
	// Everything kelpied writes (Raft log, snapshots, keyring, activation
	// log) is for its own eyes: files 0600, directories 0700.
	syscall.Umask(0o077)
	os.Exit(run(os.Args))
}

// run executes the app and maps its error to an exit code.
func run(args []string) int {
	app := newApp()
	err := app.Run(args)
	if err == nil {
		return exitOK
	}
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(os.Stderr, "%s: %v\nRun '%s --help' for usage.\n", appHelpName, ue.err, appHelpName)
		return exitUsage
	}
	fmt.Fprintf(os.Stderr, "%s: %v\n", appHelpName, err)
	return exitFailed
}

func newApp() *cli.App {
	return &cli.App{
		Name:      appHelpName,
		HelpName:  appHelpName,
		Usage:     "the kelpie-cluster agent",
		UsageText: "kelpied [flags]",
		Description: `Runs one kelpie-cluster node. Servers (--server) run Raft and commit the
membership view; clients follow it from the servers. Every flag can also be
given through the environment variable shown next to it.

Examples:
   # single-node development cluster (temporary data dir)
   kelpied --dev

   # first of three servers on 10.0.0.1; the others join it
   kelpied --node-id s1 --bind 10.0.0.1 --server --bootstrap-expect 3 \
           --data-dir /var/lib/kelpie --join 10.0.0.2:7501 --join 10.0.0.3:7501

   # a client
   kelpied --node-id c1 --bind 10.0.0.9 --join 10.0.0.1:7501

Exit codes:
   0  stopped cleanly (after SIGINT/SIGTERM)
   1  the agent failed to start or stopped on an error
   2  invalid flags or arguments`,
		Version:              version,
		Flags:                agentFlags(),
		EnableBashCompletion: true,
		HideHelpCommand:      true,
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return &usageError{err}
		},
		// Exit codes are decided in run, not inside the library.
		ExitErrHandler: func(*cli.Context, error) {},
		Action:         agentAction,
	}
}

func agentAction(c *cli.Context) error {
	if c.NArg() > 0 {
		return usagef("unexpected arguments: %v (kelpied takes only flags)", c.Args().Slice())
	}
	o, err := optionsFromFlags(c)
	if err != nil {
		return err
	}
	return runAgent(c.Context, o)
}
