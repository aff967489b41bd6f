package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	cluster "github.com/kelpie/cluster"
	"github.com/kelpie/cluster/consensus"
)

// Operator verbs: voters [remove], leave, snapshot save|restore, completion.

// Defaults for long operations when --timeout is not given.
const (
	leaveTimeout    = 3 * time.Minute // the node drains its actors first
	snapshotTimeout = 2 * time.Minute
)

func votersCommand() *cli.Command {
	return &cli.Command{
		Name:  "voters",
		Usage: "show the Raft configuration (voters and standbys) and, from the leader, their health",
		UsageText: "kelpiectl [global flags] voters\n" +
			"kelpiectl [global flags] voters remove ID [--force]\n\n" +
			"Examples:\n   kelpiectl --addr http://127.0.0.12:7500 voters\n   kelpiectl voters remove n3",
		Action: cmdVoters,
		Subcommands: []*cli.Command{
			{
				Name:      "remove",
				Usage:     "take a server out of the Raft configuration (refuses if that would lose quorum)",
				ArgsUsage: "ID",
				UsageText: "kelpiectl [global flags] voters remove ID [--force]\n\n" +
					"Examples:\n   kelpiectl voters remove n3\n   kelpiectl voters remove n3 --force   # even if quorum would be lost",
				Description: "For servers that are gone for good (a live server is added back as a\n" +
					"standby by voter management). kelpiectl first reads /v1/voters from the\n" +
					"leader and refuses, with exit 1, when the voters left after the removal\n" +
					"would not have a healthy majority, or when it cannot tell; --force skips\n" +
					"that check.",
				Flags: []cli.Flag{
					&cli.BoolFlag{Name: "force", Usage: "remove even if the remaining voters would not have a healthy majority"},
				},
				Action: cmdVotersRemove,
			},
		},
	}
}

func cmdVotersRemove(c *cli.Context) error {
	args, err := needArgs(c, "ID")
	if err != nil {
		return err
	}
	id := args[0]
	g, cl, err := setup(c)
	if err != nil {
		return err
	}
	v, err := leaderVoters(c, g, cl)
	if err != nil {
		return err
	}
	if err := checkRemoval(v, id, c.Bool("force")); err != nil {
		return err
	}
	out, err := call(c, g, func(ctx context.Context) (cluster.VoterRemoval, error) { return cl.RemoveVoter(ctx, id) })
	if err != nil {
		return err
	}
	if g.format == "json" {
		return printJSON(out)
	}
	kind := "standby"
	if out.WasVoter {
		kind = "voter"
	}
	fmt.Printf("removed %s (%s) from the Raft configuration\nservers now: %s\n", out.Removed, kind, peerList(out.Peers))
	return nil
}

// leaderVoters reads /v1/voters, from the leader if --addr is not it, so
// that the answer carries the servers' health.
func leaderVoters(c *cli.Context, g globals, cl *cluster.Client) (*cluster.Voters, error) {
	v, err := call(c, g, cl.Voters)
	if err != nil || v.Health != nil {
		return v, err
	}
	l, err := call(c, g, cl.Leader)
	if err != nil {
		return v, err
	}
	if !l.Known || l.HTTPAddr == "" {
		return v, nil
	}
	lc, err := clientFor(g, l.HTTPAddr)
	if err != nil {
		return v, nil
	}
	if lv, err := call(c, g, lc.Voters); err == nil {
		return lv, nil
	}
	return v, nil
}

// checkRemoval refuses to remove a voter when the voters left would not have
// a healthy majority (cluster.HasQuorum), unless force.
func checkRemoval(v *cluster.Voters, id string, force bool) error {
	var ids []string
	var target *consensus.Peer
	for i, p := range v.Peers {
		ids = append(ids, p.ID)
		if p.ID == id {
			target = &v.Peers[i]
		}
	}
	if target == nil {
		return fmt.Errorf("%s is not in the Raft configuration (servers: %s)", id, strings.Join(ids, ", "))
	}
	if force || !target.Voter {
		return nil
	}
	if v.Health == nil {
		return fmt.Errorf("cannot check that removing %s keeps a quorum: no voter health from the leader; use --force to remove it anyway", id)
	}
	healthy := map[string]bool{}
	for _, s := range v.Health.Servers {
		healthy[s.ID] = s.Healthy
	}
	remaining, ok := 0, []string{}
	for _, p := range v.Peers {
		if !p.Voter || p.ID == id {
			continue
		}
		remaining++
		if healthy[p.ID] {
			ok = append(ok, p.ID)
		}
	}
	if !cluster.HasQuorum(len(ok), remaining) {
		return fmt.Errorf("removing voter %s would lose quorum: %d of %d remaining voters healthy (%s); use --force to remove it anyway",
			id, len(ok), remaining, orDash(strings.Join(ok, ", ")))
	}
	return nil
}

func peerList(peers []consensus.Peer) string {
	var parts []string
	for _, p := range peers {
		kind := "standby"
		if p.Voter {
			kind = "voter"
		}
		parts = append(parts, p.ID+" ("+kind+")")
	}
	return orDash(strings.Join(parts, ", "))
}

func leaveCommand() *cli.Command {
	return &cli.Command{
		Name:  "leave",
		Usage: "make the node at --addr leave the cluster gracefully; its agent then stops",
		UsageText: "kelpiectl [global flags] leave\n\n" +
			"Example:\n   kelpiectl --addr http://10.0.0.7:7500 leave",
		Description: "The node's actors are drained to other nodes, the leader commits it Left\n" +
			"(a leader hands over leadership first), it leaves gossip, and kelpied exits\n" +
			"with status 0. Without quorum it stays a member and kelpiectl exits 1.\n" +
			"Waits up to 3m unless --timeout is given.",
		Action: cmdLeave,
	}
}

func cmdLeave(c *cli.Context) error {
	g, cl, err := setup(c)
	if err != nil {
		return err
	}
	g.timeout = g.timeoutOr(leaveTimeout)
	out, err := call(c, g, cl.AgentLeave)
	if err != nil {
		return err
	}
	if g.format == "json" {
		return printJSON(out)
	}
	fmt.Printf("%s left the cluster; its agent is stopping\n", out.Node)
	return nil
}

func snapshotCommand() *cli.Command {
	return &cli.Command{
		Name:  "snapshot",
		Usage: "save or restore a snapshot of the committed state (view, placements, migrations)",
		UsageText: "kelpiectl [global flags] snapshot save FILE [--stale]\n" +
			"kelpiectl [global flags] snapshot restore FILE",
		Action: func(c *cli.Context) error {
			_ = cli.ShowSubcommandHelp(c)
			return usagef("snapshot: need a subcommand: save or restore")
		},
		Subcommands: []*cli.Command{
			{
				Name:      "save",
				Usage:     "write a snapshot of the committed state to FILE",
				ArgsUsage: "FILE",
				UsageText: "kelpiectl [global flags] snapshot save FILE [--stale]\n\n" +
					"Examples:\n   kelpiectl snapshot save backup.snap\n   kelpiectl snapshot save - > backup.snap   # to stdout",
				Description: "The snapshot is read from the leader (with --stale: from any server's\n" +
					"replica), checked against the checksum the node sends and validated, then\n" +
					"written atomically (a temporary file renamed into place, mode 0600), so\n" +
					"FILE is either the complete snapshot or untouched. On a terminal, progress\n" +
					"is shown.",
				Flags: []cli.Flag{
					&cli.BoolFlag{Name: "stale", Usage: "let any server answer from its replica (works without a leader)"},
				},
				Action: cmdSnapshotSave,
			},
			{
				Name:      "restore",
				Usage:     "replace the committed state, cluster-wide, with the snapshot in FILE",
				ArgsUsage: "FILE",
				UsageText: "kelpiectl [global flags] snapshot restore FILE\n\n" +
					"Example:\n   kelpiectl snapshot restore backup.snap",
				Description: "The leader validates the document (a corrupt one changes nothing, exit 1)\n" +
					"and installs it on every server through Raft. Epochs and fencing tokens\n" +
					"move forward; members Active both in the snapshot and in the running\n" +
					"cluster are bound to the running processes, so restoring onto a new\n" +
					"cluster with the same node IDs reproduces the view and the placements.\n" +
					"Every placed actor is deactivated first and starts again under its\n" +
					"restored placement on its next use; writes racing with the restore are\n" +
					"lost. Waits up to 2m unless --timeout is given.",
				Action: cmdSnapshotRestore,
			},
		},
	}
}

// snapshotSaved is the JSON output of snapshot save.
type snapshotSaved struct {
	File string `json:"file"`
	cluster.SnapshotDownload
	Snapshot consensus.SnapshotInfo `json:"snapshot"`
}

func cmdSnapshotSave(c *cli.Context) error {
	args, err := needArgs(c, "FILE")
	if err != nil {
		return err
	}
	file := args[0]
	g, cl, err := setup(c)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(c.Context, g.timeoutOr(snapshotTimeout))
	defer cancel()
	prog := newProgress()
	if file == "-" {
		prog.on = false // stdout is the snapshot
	}
	var buf bytes.Buffer
	d, err := cl.Snapshot(ctx, &buf, cluster.SnapshotOptions{Stale: c.Bool("stale"), Progress: func(done, total int64) {
		if total > 0 {
			prog.printf("saving snapshot: %s of %s (%d%%)", size(done), size(total), done*100/total)
		} else {
			prog.printf("saving snapshot: %s", size(done))
		}
	}})
	prog.done()
	if err != nil {
		return opError(c.Context, g, err)
	}
	info, err := consensus.ValidateSnapshot(buf.Bytes())
	if err != nil {
		return fmt.Errorf("the node sent an invalid snapshot; nothing written: %v", err)
	}
	if file == "-" {
		_, err := os.Stdout.Write(buf.Bytes())
		return err
	}
	if err := writeFileAtomic(file, buf.Bytes(), 0o600); err != nil {
		return err
	}
	out := snapshotSaved{File: file, SnapshotDownload: d, Snapshot: info}
	if g.format == "json" {
		return printJSON(out)
	}
	return printSnapshotSaved(out)
}

// writeFileAtomic writes data to a temporary file next to path (mode perm),
// syncs it and renames it over path, so path is never partly written.
func writeFileAtomic(path string, data []byte, perm os.FileMode) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = os.Remove(tmp)
		}
	}()
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // make the rename durable
		d.Close()
	}
	return nil
}

func cmdSnapshotRestore(c *cli.Context) error {
	args, err := needArgs(c, "FILE")
	if err != nil {
		return err
	}
	data, err := os.ReadFile(args[0])
	if err != nil {
		return fmt.Errorf("read snapshot: %w", err)
	}
	g, cl, err := setup(c)
	if err != nil {
		return err
	}
	g.timeout = g.timeoutOr(snapshotTimeout)
	out, err := call(c, g, func(ctx context.Context) (cluster.SnapshotRestoreResult, error) {
		return cl.RestoreSnapshot(ctx, bytes.NewReader(data))
	})
	if err != nil {
		return err
	}
	if g.format == "json" {
		return printJSON(out)
	}
	return printSnapshotRestored(args[0], out)
}

// size formats a byte count.
func size(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func completionCommand() *cli.Command {
	return &cli.Command{
		Name:      "completion",
		Usage:     "print a shell completion script (bash or zsh)",
		ArgsUsage: "SHELL",
		UsageText: "kelpiectl completion bash|zsh\n\n" +
			"Examples:\n   source <(kelpiectl completion bash)          # in ~/.bashrc\n" +
			"   kelpiectl completion zsh > \"${fpath[1]}/_kelpiectl\"",
		Action: func(c *cli.Context) error {
			args, err := needArgs(c, "SHELL")
			if err != nil {
				return err
			}
			script, ok := completionScripts[args[0]]
			if !ok {
				return usagef("completion: unknown shell %q (bash or zsh)", args[0])
			}
			fmt.Print(strings.ReplaceAll(script, "PROG", appName))
			return nil
		},
		BashComplete: func(c *cli.Context) {
			keys := make([]string, 0, len(completionScripts))
			for k := range completionScripts {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			fmt.Println(strings.Join(keys, "\n"))
		},
	}
}

// completionScripts drive urfave/cli's --generate-bash-completion.
var completionScripts = map[string]string{
	"bash": `# bash completion for PROG
_PROG_complete() {
  local cur opts
  COMPREPLY=()
  cur="${COMP_WORDS[COMP_CWORD]}"
  if [[ "$cur" == "-"* ]]; then
    opts=$( "${COMP_WORDS[@]:0:$COMP_CWORD}" "${cur}" --generate-bash-completion 2>/dev/null )
  else
    opts=$( "${COMP_WORDS[@]:0:$COMP_CWORD}" --generate-bash-completion 2>/dev/null )
  fi
  COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
  return 0
}
complete -o bashdefault -o default -F _PROG_complete PROG
`,
	"zsh": `#compdef PROG
_PROG() {
  local -a opts
  local cur=${words[-1]}
  if [[ "$cur" == "-"* ]]; then
    opts=("${(@f)$(${words[@]:0:#words[@]-1} ${cur} --generate-bash-completion 2>/dev/null)}")
  else
    opts=("${(@f)$(${words[@]:0:#words[@]-1} --generate-bash-completion 2>/dev/null)}")
  fi
  if [[ "${opts[1]}" != "" ]]; then
    _describe 'values' opts
  else
    _files
  fi
}
compdef _PROG PROG
`,
}
