package main

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	cluster "github.com/kelpie/cluster"
)

// Flag names. Each is also read from KELPIE_<NAME> (upper case, '-' → '_').
const (
	flagNodeID          = "node-id"
	flagBind            = "bind"
	flagHTTPPort        = "http-port"
	flagGossipPort      = "gossip-port"
	flagRaftPort        = "raft-port"
	flagDataDir         = "data-dir"
	flagServer          = "server"
	flagBootstrapExpect = "bootstrap-expect"
	flagVoters          = "voters"
	flagJoin            = "join"
	flagZone            = "zone"
	flagLogLevel        = "log-level"
	flagLogFormat       = "log-format"
	flagDev             = "dev"
	flagActivationLog   = "activation-log"
	flagCapacity        = "capacity"
	flagLabel           = "label"
	flagEncrypt         = "encrypt"
	flagTLSCert         = "tls-cert"
	flagTLSKey          = "tls-key"
	flagTLSCA           = "tls-ca"
	flagTLSServerName   = "tls-server-name"
	flagACLToken        = "acl-token"
	flagACLTokenFile    = "acl-token-file"
	flagACLReadToken    = "acl-read-token"
	flagProbeInterval   = "probe-interval"
	flagProbeTimeout    = "probe-timeout"
	flagSuspicionMult   = "suspicion-mult"
	flagFailureHold     = "failure-hold"
	flagEnableDebug     = "enable-debug"
)

// envName is the environment variable for a flag: KELPIE_HTTP_PORT for
// --http-port.
func envName(flag string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

func env(flag string) []string { return []string{envName(flag)} }

func agentFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: flagNodeID, EnvVars: env(flagNodeID), DefaultText: "hostname",
			Usage: "unique node ID (1-128 characters of [A-Za-z0-9._-])"},
		&cli.StringFlag{Name: flagBind, EnvVars: env(flagBind), Value: "127.0.0.1",
			Usage: "IP address every listener binds and every outgoing connection uses as source"},
		&cli.IntFlag{Name: flagHTTPPort, EnvVars: env(flagHTTPPort), Value: cluster.DefaultHTTPPort,
			Usage: "HTTP API and /metrics port (0 picks a free port)"},
		&cli.IntFlag{Name: flagGossipPort, EnvVars: env(flagGossipPort), Value: cluster.DefaultGossipPort,
			Usage: "gossip port, TCP and UDP (0 picks a free port)"},
		&cli.IntFlag{Name: flagRaftPort, EnvVars: env(flagRaftPort), Value: cluster.DefaultRaftPort,
			Usage: "Raft port, servers only (0 picks a free port)"},
		&cli.StringFlag{Name: flagDataDir, EnvVars: env(flagDataDir), TakesFile: true,
			Usage: "directory for durable Raft state (servers); empty keeps it in memory and nothing survives a restart"},
		&cli.BoolFlag{Name: flagServer, EnvVars: env(flagServer),
			Usage: "run Raft (voter or warm standby) instead of being a client"},
		&cli.IntFlag{Name: flagBootstrapExpect, EnvVars: env(flagBootstrapExpect),
			Usage: "servers: bootstrap Raft once this many servers (0-7) with the same setting see each other"},
		&cli.IntFlag{Name: flagVoters, EnvVars: env(flagVoters), Value: 3,
			Usage: "servers: number of Raft voters the leader keeps (1, 3, 5 or 7)"},
		&cli.StringSliceFlag{Name: flagJoin, EnvVars: env(flagJoin),
			Usage: "gossip address (ip:port; the port defaults to 7501) of a member to join through; repeatable or comma-separated"},
		&cli.StringFlag{Name: flagZone, EnvVars: env(flagZone),
			Usage: "zone label carried in gossip and the view"},
		&cli.StringFlag{Name: flagLogLevel, EnvVars: env(flagLogLevel), Value: "info",
			Usage: "log level: debug, info, warn or error"},
		&cli.StringFlag{Name: flagLogFormat, EnvVars: env(flagLogFormat), Value: "text",
			Usage: "log format on stderr: text or json"},
		&cli.StringFlag{Name: flagActivationLog, EnvVars: env(flagActivationLog), TakesFile: true,
			Usage: "demo host: append every actor activation/deactivation as a JSON line here (default <data-dir>/activations.jsonl when --data-dir is set)"},
		&cli.IntFlag{Name: flagCapacity, EnvVars: env(flagCapacity),
			Usage: "most actors this node hosts (0 = unlimited)"},
		&cli.StringSliceFlag{Name: flagLabel, EnvVars: env(flagLabel),
			Usage: "placement label k=v advertised by this node; repeatable"},
		&cli.StringFlag{Name: flagEncrypt, EnvVars: env(flagEncrypt),
			Usage: "gossip encryption key (base64 of 16, 24 or 32 bytes); seeds the keyring kept in the data dir"},
		&cli.StringFlag{Name: flagTLSCert, EnvVars: env(flagTLSCert), TakesFile: true,
			Usage: "TLS certificate (PEM) for the HTTP API and node-to-node mTLS; reloaded on SIGHUP"},
		&cli.StringFlag{Name: flagTLSKey, EnvVars: env(flagTLSKey), TakesFile: true, Usage: "TLS private key (PEM)"},
		&cli.StringFlag{Name: flagTLSCA, EnvVars: env(flagTLSCA), TakesFile: true, Usage: "CA certificate (PEM) that signed every node's certificate"},
		&cli.StringFlag{Name: flagTLSServerName, EnvVars: env(flagTLSServerName), Value: "kelpie",
			Usage: "DNS name every node certificate carries; nodes verify each other by it"},
		&cli.StringFlag{Name: flagACLToken, EnvVars: env(flagACLToken),
			Usage: "access token required by every write and internal endpoint (prefer --acl-token-file: flags show in ps)"},
		&cli.StringFlag{Name: flagACLTokenFile, EnvVars: env(flagACLTokenFile), TakesFile: true,
			Usage: "file holding the access token"},
		&cli.StringFlag{Name: flagACLReadToken, EnvVars: env(flagACLReadToken),
			Usage: "read-only token that opens the read endpoints"},
		// The failure-detector knobs (see gossip.Config and README
		// "Failure detection"): every member of a cluster should use the
		// same values.
		&cli.DurationFlag{Name: flagProbeInterval, EnvVars: env(flagProbeInterval), Value: gossipDefaults.ProbeInterval,
			Usage: "failure detector: time between probes of one member by this node (> --probe-timeout)"},
		&cli.DurationFlag{Name: flagProbeTimeout, EnvVars: env(flagProbeTimeout), Value: gossipDefaults.ProbeTimeout,
			Usage: "failure detector: wait for a direct ack before probing indirectly"},
		&cli.IntFlag{Name: flagSuspicionMult, EnvVars: env(flagSuspicionMult), Value: gossipDefaults.SuspicionMult,
			Usage: "failure detector: suspicion lasts this × max(1, log10 N) × --probe-interval (up to 6× that without confirmations) before a member is declared failed"},
		&cli.DurationFlag{Name: flagFailureHold, EnvVars: env(flagFailureHold), Value: cluster.DefaultConfig().FailureHold,
			Usage: "before committing Failed for a member gossip declares failed, the leader connects to its HTTP port; if the process still accepts (paused, not crashed) the verdict waits up to this long (0 disables)"},
		&cli.BoolFlag{Name: flagEnableDebug, EnvVars: env(flagEnableDebug),
			Usage: "serve Go's profiler under /debug/pprof/ on the HTTP API (with ACLs on, it needs the write token)"},
		&cli.BoolFlag{Name: flagDev, EnvVars: env(flagDev),
			Usage: "single-node development mode: --server --bootstrap-expect 1 --voters 1 and a temporary data dir (removed at exit) unless --data-dir is given"},
	}
}

// gossipDefaults supplies the failure-detector flags' defaults.
var gossipDefaults = cluster.DefaultConfig().Gossip

// options is everything the agent needs, derived from the flags.
type options struct {
	cfg           cluster.Config
	activationLog string
	seeds         []string
	logLevel      slog.Level
	logFormat     string
	dev           bool
	enableDebug   bool
	// tempDataDir: in dev mode without --data-dir, create a temporary data
	// dir at start and remove it at exit.
	tempDataDir bool
}

// optionsFromFlags validates the flags and builds the node configuration from
// cluster.DefaultConfig. Every error is a usage error (exit 2).
func optionsFromFlags(c *cli.Context) (*options, error) {
	o := &options{dev: c.Bool(flagDev), enableDebug: c.Bool(flagEnableDebug)}
	cfg := cluster.DefaultConfig()
	cfg.Version = version

	cfg.NodeID = c.String(flagNodeID)
	if cfg.NodeID == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, usagef("--%s not given and the hostname is unavailable: %v", flagNodeID, err)
		}
		if !cluster.ValidID(h) {
			return nil, usagef("--%s not given and the hostname %q is not a valid node ID; pass --%s", flagNodeID, h, flagNodeID)
		}
		cfg.NodeID = h
	}
	if !cluster.ValidID(cfg.NodeID) {
		return nil, usagef("--%s %q: need 1-128 characters of [A-Za-z0-9._-]", flagNodeID, cfg.NodeID)
	}

	cfg.BindAddr = c.String(flagBind)
	if ip := net.ParseIP(cfg.BindAddr); ip == nil || ip.IsUnspecified() {
		return nil, usagef("--%s %q: need a concrete IP address (not a hostname, not 0.0.0.0)", flagBind, cfg.BindAddr)
	}
	for _, p := range []struct {
		name string
		dst  *int
	}{{flagHTTPPort, &cfg.HTTPPort}, {flagGossipPort, &cfg.GossipPort}, {flagRaftPort, &cfg.RaftPort}} {
		v := c.Int(p.name)
		if v < 0 || v > 65535 {
			return nil, usagef("--%s %d: need 0-65535", p.name, v)
		}
		*p.dst = v
	}
	cfg.DataDir = c.String(flagDataDir)
	cfg.Server = c.Bool(flagServer)
	cfg.BootstrapExpect = c.Int(flagBootstrapExpect)
	cfg.Voters.Voters = c.Int(flagVoters)
	cfg.Zone = c.String(flagZone)
	cfg.Capacity = c.Int(flagCapacity)
	if cfg.Capacity < 0 {
		return nil, usagef("--%s %d: need ≥ 0", flagCapacity, cfg.Capacity)
	}
	for _, kv := range c.StringSlice(flagLabel) {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok || !cluster.ValidID(k) || (v != "" && !cluster.ValidID(v)) {
			return nil, usagef("--%s %q: need key=value of [A-Za-z0-9._-]", flagLabel, kv)
		}
		if cfg.Labels == nil {
			cfg.Labels = map[string]string{}
		}
		cfg.Labels[k] = v
	}
	cfg.Gossip.ProbeInterval = c.Duration(flagProbeInterval)
	cfg.Gossip.ProbeTimeout = c.Duration(flagProbeTimeout)
	cfg.Gossip.SuspicionMult = c.Int(flagSuspicionMult)
	if g := cfg.Gossip; g.ProbeInterval <= 0 || g.ProbeTimeout <= 0 || g.ProbeTimeout >= g.ProbeInterval {
		return nil, usagef("--%s %v / --%s %v: need 0 < probe timeout < probe interval", flagProbeInterval, g.ProbeInterval, flagProbeTimeout, g.ProbeTimeout)
	}
	if cfg.Gossip.SuspicionMult < 1 || cfg.Gossip.SuspicionMult > 100 {
		return nil, usagef("--%s %d: need 1-100", flagSuspicionMult, cfg.Gossip.SuspicionMult)
	}
	cfg.FailureHold = c.Duration(flagFailureHold)
	if cfg.FailureHold < 0 || cfg.FailureHold > time.Minute {
		return nil, usagef("--%s %v: need 0-1m", flagFailureHold, cfg.FailureHold)
	}
	cfg.EncryptKey = c.String(flagEncrypt)
	cfg.TLS = cluster.TLSConfig{CertFile: c.String(flagTLSCert), KeyFile: c.String(flagTLSKey),
		CAFile: c.String(flagTLSCA), ServerName: c.String(flagTLSServerName)}
	cfg.ACLToken, cfg.ACLReadToken = c.String(flagACLToken), c.String(flagACLReadToken)
	if f := c.String(flagACLTokenFile); f != "" {
		if cfg.ACLToken != "" {
			return nil, usagef("--%s and --%s are exclusive", flagACLToken, flagACLTokenFile)
		}
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, usagef("--%s: %v", flagACLTokenFile, err)
		}
		cfg.ACLToken = strings.TrimSpace(string(b))
		if cfg.ACLToken == "" {
			return nil, usagef("--%s %s is empty", flagACLTokenFile, f)
		}
	}
	o.activationLog = c.String(flagActivationLog)
	if o.activationLog == "" && cfg.DataDir != "" {
		o.activationLog = filepath.Join(cfg.DataDir, "activations.jsonl")
	}

	if o.dev {
		if c.IsSet(flagBootstrapExpect) && cfg.BootstrapExpect != 1 {
			return nil, usagef("--%s sets --%s 1; got --%s %d", flagDev, flagBootstrapExpect, flagBootstrapExpect, cfg.BootstrapExpect)
		}
		if c.IsSet(flagVoters) && cfg.Voters.Voters != 1 {
			return nil, usagef("--%s sets --%s 1; got --%s %d", flagDev, flagVoters, flagVoters, cfg.Voters.Voters)
		}
		cfg.Server, cfg.BootstrapExpect, cfg.Voters.Voters = true, 1, 1
		o.tempDataDir = cfg.DataDir == ""
	}

	if cfg.BootstrapExpect < 0 || cfg.BootstrapExpect > 7 {
		return nil, usagef("--%s %d: need 0-7", flagBootstrapExpect, cfg.BootstrapExpect)
	}
	if cfg.BootstrapExpect > 0 && !cfg.Server {
		return nil, usagef("--%s needs --%s", flagBootstrapExpect, flagServer)
	}
	switch cfg.Voters.Voters {
	case 1, 3, 5, 7:
	default:
		return nil, usagef("--%s %d: need 1, 3, 5 or 7", flagVoters, cfg.Voters.Voters)
	}

	for _, s := range c.StringSlice(flagJoin) {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		seed, err := normalizeSeed(s)
		if err != nil {
			return nil, usagef("--%s %q: %v", flagJoin, s, err)
		}
		o.seeds = append(o.seeds, seed)
	}

	lvl, err := parseLevel(c.String(flagLogLevel))
	if err != nil {
		return nil, usagef("--%s: %v", flagLogLevel, err)
	}
	o.logLevel = lvl
	switch f := c.String(flagLogFormat); f {
	case "text", "json":
		o.logFormat = f
	default:
		return nil, usagef("--%s %q: need text or json", flagLogFormat, f)
	}

	if err := cfg.Validate(); err != nil {
		return nil, usagef("invalid configuration: %v", err)
	}
	o.cfg = cfg
	return o, nil
}

// normalizeSeed accepts "ip:port" or a bare "ip" (the default gossip port is
// added). Seeds must be IP addresses: gossip does not resolve names.
func normalizeSeed(s string) (string, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		host, port = strings.Trim(s, "[]"), strconv.Itoa(cluster.DefaultGossipPort)
	}
	if net.ParseIP(host) == nil {
		return "", fmt.Errorf("need ip:port of a member's gossip address (%q is not an IP address)", host)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return "", fmt.Errorf("port %q: need 1-65535", port)
	}
	return net.JoinHostPort(host, port), nil
}

func parseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("%q: need debug, info, warn or error", s)
}
