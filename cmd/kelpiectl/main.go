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
	"strings"
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
	flagAddr          = "addr"
	flagToken         = "token"
	flagTimeout       = "timeout"
	flagFormat        = "format"
	flagCACert        = "ca-cert"
	flagClientCert    = "client-cert"
	flagClientKey     = "client-key"
	flagTLSServerName = "tls-server-name"
)

const (
	defaultAddr    = "http://127.0.0.1:7500"
	defaultTimeout = 10 * time.Second
	// defaultServerName is the DNS name kelpied's node certificates carry
	// by default (kelpied --tls-server-name).
	defaultServerName = "kelpie"
)

// usageError marks an error in how kelpiectl was invoked (exit 2). cmd, if
// known, is the command whose usage line is printed with it.
type usageError struct {
	err error
	cmd *cli.Command
}

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return &usageError{err: fmt.Errorf(format, args...)}
}

func onUsageError(c *cli.Context, err error, _ bool) error {
	return &usageError{err: err, cmd: c.Command}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string) int {
	app := newApp()
	err := app.RunContext(ctx, reorderArgs(app, args))
	if err == nil {
		return exitOK
	}
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(os.Stderr, "%s: %v\n", appName, ue.err)
		if hint := suggestion(app, ue); hint != "" {
			fmt.Fprintln(os.Stderr, hint)
		}
		if ue.cmd != nil && ue.cmd.Name != "" {
			line, _, _ := strings.Cut(ue.cmd.UsageText, "\n")
			fmt.Fprintf(os.Stderr, "Usage: %s\nRun '%s --help' for details.\n", line, ue.cmd.HelpName)
		} else {
			fmt.Fprintf(os.Stderr, "Run '%s --help' for usage.\n", appName)
		}
		return exitUsage
	}
	fmt.Fprintf(os.Stderr, "%s: %v\n", appName, err)
	return exitFailed
}

// suggestion is a "Did you mean ...?" line for a misspelled flag or command,
// or "".
func suggestion(app *cli.App, ue *usageError) string {
	msg := ue.err.Error()
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: "); ok && cli.SuggestFlag != nil {
		flags := app.Flags
		if ue.cmd != nil {
			flags = ue.cmd.Flags
		}
		if s := cli.SuggestFlag(flags, strings.TrimLeft(name, "-"), true); s != "" {
			return fmt.Sprintf("Did you mean %s?", s)
		}
	}
	if name, ok := strings.CutPrefix(msg, "unknown command "); ok && cli.SuggestCommand != nil {
		if s := cli.SuggestCommand(app.Commands, strings.Trim(name, `"`)); s != "" {
			return s
		}
	}
	return ""
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
			Usage: "HTTP API address of any node (`URL` or host:port; https:// for TLS)"},
		&cli.StringFlag{Name: flagToken, EnvVars: env("KELPIE_TOKEN"), Hidden: hidden,
			Usage: "access `TOKEN` sent with every request"},
		&cli.DurationFlag{Name: flagTimeout, Value: defaultTimeout, Hidden: hidden,
			Usage: "wait at most `DURATION` for each answer (long operations: see each command)"},
		&cli.StringFlag{Name: flagFormat, Value: "table", Hidden: hidden,
			Usage: "output `FORMAT`: table or json (the API document)"},
		&cli.StringFlag{Name: flagCACert, EnvVars: env("KELPIE_CACERT"), Hidden: hidden, TakesFile: true,
			Usage: "CA certificate (`PEM` file) that signed the node certificates; implies https"},
		&cli.StringFlag{Name: flagClientCert, EnvVars: env("KELPIE_CLIENT_CERT"), Hidden: hidden, TakesFile: true,
			Usage: "client certificate (`PEM` file) for mutual TLS"},
		&cli.StringFlag{Name: flagClientKey, EnvVars: env("KELPIE_CLIENT_KEY"), Hidden: hidden, TakesFile: true,
			Usage: "private key (`PEM` file) of --client-cert"},
		&cli.StringFlag{Name: flagTLSServerName, Value: defaultServerName, EnvVars: env("KELPIE_TLS_SERVER_NAME"), Hidden: hidden,
			Usage: "`NAME` the node certificates carry (kelpied --tls-server-name); checked with --ca-cert instead of the address's host"},
	}
}

const appDescription = `kelpiectl queries and operates a kelpie cluster through the HTTP API of
any node. Global flags may be given before or after the command; command
flags before or after its arguments.

Examples:
   kelpiectl members
   kelpiectl --addr http://127.0.0.11:7500 members --status active --format json
   KELPIE_HTTP_ADDR=10.0.0.1:7500 kelpiectl view --watch
   kelpiectl place cart-42 --prefer n3 && kelpiectl invoke cart-42 '{"op":"incr"}'
   kelpiectl snapshot save backup.snap

Output:
   --format table (default) prints aligned tables for people; --format json
   prints the API's JSON document, one per command (view --watch: one per
   line), for scripts.

Exit codes:
   0  success
   1  the operation failed: the node is unreachable, the API answered an
      error (e.g. "no quorum: 1 of 3 voters reachable"), the actor is not
      placed, no leader is known, a migration aborted, a drain left actors
      behind, a voter removal would lose quorum; the message is on stderr
   2  usage error: unknown command or flag, missing or extra argument,
      invalid flag value

Shell completion:
   source <(kelpiectl completion bash)     # or: completion zsh`

func newApp() *cli.App {
	cmds := commands()
	prepare(cmds)
	return &cli.App{
		Name:                 appName,
		HelpName:             appName,
		Usage:                "query and operate a kelpie cluster",
		UsageText:            "kelpiectl [global flags] command [command flags] [arguments]",
		Description:          appDescription,
		Version:              version,
		Flags:                globalFlags(false),
		Commands:             cmds,
		EnableBashCompletion: true,
		Suggest:              true,
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

// prepare adds the hidden global flags, the usage-error hook and argument
// checks to every command and subcommand. A command without ArgsUsage takes
// no arguments; the others check their own.
func prepare(cmds []*cli.Command) {
	for _, c := range cmds {
		c.Flags = append(c.Flags, globalFlags(true)...)
		c.OnUsageError = onUsageError
		if c.Action != nil {
			c.Action = checked(c.ArgsUsage == "", c.Action)
		}
		prepare(c.Subcommands)
	}
}

// checked rejects arguments for commands that take none, and attaches the
// command to usage errors its action returns.
func checked(noArgs bool, action cli.ActionFunc) cli.ActionFunc {
	return func(c *cli.Context) error {
		var err error
		if noArgs && c.NArg() > 0 {
			err = usagef("%s: unexpected arguments %v", c.Command.Name, c.Args().Slice())
		} else {
			err = action(c)
		}
		var ue *usageError
		if errors.As(err, &ue) && ue.cmd == nil {
			ue.cmd = c.Command
		}
		return err
	}
}

// needArgs returns the command's positional arguments if there are exactly
// as many as names (used in the message otherwise).
func needArgs(c *cli.Context, names ...string) ([]string, error) {
	args := c.Args().Slice()
	switch {
	case len(args) < len(names):
		return nil, usagef("%s: missing %s", c.Command.Name, strings.Join(names[len(args):], " "))
	case len(args) > len(names):
		return nil, usagef("%s: unexpected arguments %v", c.Command.Name, args[len(names):])
	}
	return args, nil
}

// reorderArgs moves the flags of the innermost command in front of its
// positional arguments, so that "place a1 --prefer n2" works like "place
// --prefer n2 a1" (urfave/cli v2 stops parsing flags at the first
// argument). Everything after "--" stays as it is, and so do completion
// requests.
func reorderArgs(app *cli.App, args []string) []string {
	if len(args) < 2 || args[len(args)-1] == "--generate-bash-completion" {
		return args
	}
	out := []string{args[0]}
	cmds, flags := app.Commands, app.Flags
	i := 1
	// Walk the command path: global and intermediate flags stay in place.
	for i < len(args) {
		a := args[i]
		if a == "--" {
			return args
		}
		if strings.HasPrefix(a, "-") && a != "-" {
			out = append(out, a)
			i++
			if takesValue(flags, a) && i < len(args) {
				out = append(out, args[i])
				i++
			}
			continue
		}
		var next *cli.Command
		for _, c := range cmds {
			if c.HasName(a) {
				next = c
			}
		}
		if next == nil {
			break
		}
		out = append(out, a)
		cmds, flags = next.Subcommands, next.Flags
		i++
	}
	var opts, pos []string
	for i < len(args) {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i:]...)
			break
		}
		if strings.HasPrefix(a, "-") && a != "-" {
			opts = append(opts, a)
			i++
			if takesValue(flags, a) && i < len(args) {
				opts = append(opts, args[i])
				i++
			}
			continue
		}
		pos = append(pos, a)
		i++
	}
	return append(append(out, opts...), pos...)
}

// takesValue reports whether arg ("--name" or "-n", without "=value") names
// a flag in flags that takes a value. Unknown flags are left to the parser.
func takesValue(flags []cli.Flag, arg string) bool {
	if strings.Contains(arg, "=") {
		return false
	}
	name := strings.TrimLeft(arg, "-")
	for _, f := range flags {
		for _, n := range f.Names() {
			if n == name {
				_, isBool := f.(*cli.BoolFlag)
				return !isBool
			}
		}
	}
	return false
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

// isSet reports whether a global flag was given (anywhere, or through its
// environment variable).
func isSet(c *cli.Context, name string) bool {
	for _, cc := range c.Lineage() {
		if cc.IsSet(name) {
			return true
		}
	}
	return false
}

// globals is the resolved global flags.
type globals struct {
	addr    string
	token   string
	timeout time.Duration
	// timeoutSet: --timeout was given; long-running commands otherwise use
	// their own default.
	timeoutSet bool
	format     string
	tls        tlsFlags
}

// tlsFlags are the client TLS settings.
type tlsFlags struct {
	caCert, clientCert, clientKey, serverName string
	// serverNameSet: --tls-server-name was given. The name is checked
	// instead of the address's host when it was given or with --ca-cert
	// (the cluster's own CA, whose node certificates carry the name).
	serverNameSet bool
}

func (t tlsFlags) enabled() bool {
	return t.caCert != "" || t.clientCert != "" || t.clientKey != "" || t.serverNameSet
}

func getGlobals(c *cli.Context) (globals, error) {
	str := func(name string) string { return lookup(c, name).String(name) }
	g := globals{
		addr:       str(flagAddr),
		token:      str(flagToken),
		timeout:    lookup(c, flagTimeout).Duration(flagTimeout),
		timeoutSet: isSet(c, flagTimeout),
		format:     str(flagFormat),
		tls: tlsFlags{caCert: str(flagCACert), clientCert: str(flagClientCert),
			clientKey: str(flagClientKey), serverName: str(flagTLSServerName), serverNameSet: isSet(c, flagTLSServerName)},
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
	if (g.tls.clientCert == "") != (g.tls.clientKey == "") {
		return g, usagef("--%s and --%s go together", flagClientCert, flagClientKey)
	}
	return g, nil
}

// timeoutOr is --timeout if given, else def (for commands that run long:
// drains, migrations, leaves, restores).
func (g globals) timeoutOr(def time.Duration) time.Duration {
	if g.timeoutSet {
		return g.timeout
	}
	return max(g.timeout, def)
}
