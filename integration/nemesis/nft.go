package nemesis

import (
	"bytes"
	"fmt"
	"os/exec"
	"sort"
	"strings"
	"sync"
)

// nftTable is the table the nemesis owns (inside the private namespace).
const nftTable = "kelpie_nemesis"

// Net applies network faults between nodes with nftables: a rule per cut
// directed link (ip saddr A ip daddr B drop) and one numgen rule for random
// loss between node addresses. The rules sit in the input hook, so a packet
// is lost silently on its way in, as on a real network (dropping it on the
// way out would fail the sender's send with EPERM at once). Every change replaces the whole rule set in one
// nft transaction. Rules match node addresses only, so the test's own
// client traffic (from 127.0.0.1) is never cut. Safe for concurrent use.
type Net struct {
	mu    sync.Mutex
	ips   map[string]string // node → IP
	state NetState
	rec   *Recorder
}

// NewNet creates the nemesis table (empty) and returns a Net for nodes.
func NewNet(ips map[string]string, rec *Recorder) (*Net, error) {
	n := &Net{ips: ips, rec: rec}
	if err := n.apply(NetState{}); err != nil {
		return nil, err
	}
	return n, nil
}

// State is the faults in force.
func (n *Net) State() NetState {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.state
}

// Set replaces the faults in force with s and records it (with detail).
func (n *Net) Set(s NetState, detail string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	s = normalize(s)
	if err := n.apply(s); err != nil {
		return err
	}
	n.state = s
	if n.rec != nil {
		n.rec.Nemesis(NemesisEvent{Time: Mono(), Kind: EvNet, Net: &s, Detail: detail})
	}
	return nil
}

// Heal removes every fault.
func (n *Net) Heal() error { return n.Set(NetState{}, "heal") }

// Close deletes the table.
func (n *Net) Close() error {
	return runNft(fmt.Sprintf("delete table inet %s\n", nftTable))
}

func normalize(s NetState) NetState {
	seen := map[[2]string]bool{}
	var cuts [][2]string
	for _, c := range s.Cuts {
		if c[0] == c[1] || seen[c] {
			continue
		}
		seen[c] = true
		cuts = append(cuts, c)
	}
	sort.Slice(cuts, func(i, j int) bool {
		if cuts[i][0] != cuts[j][0] {
			return cuts[i][0] < cuts[j][0]
		}
		return cuts[i][1] < cuts[j][1]
	})
	return NetState{Cuts: cuts, LossPct: s.LossPct}
}

func (n *Net) apply(s NetState) error {
	var b strings.Builder
	fmt.Fprintf(&b, "table inet %s {\n\tchain cut_in {\n\t\ttype filter hook input priority 0; policy accept;\n\t}\n}\n", nftTable)
	fmt.Fprintf(&b, "flush chain inet %s cut_in\n", nftTable)
	for _, c := range s.Cuts {
		from, ok1 := n.ips[c[0]]
		to, ok2 := n.ips[c[1]]
		if !ok1 || !ok2 {
			return fmt.Errorf("nemesis: cut %s→%s: unknown node", c[0], c[1])
		}
		fmt.Fprintf(&b, "add rule inet %s cut_in ip saddr %s ip daddr %s drop\n", nftTable, from, to)
	}
	if s.LossPct > 0 {
		if s.LossPct > 100 {
			return fmt.Errorf("nemesis: loss %d%%", s.LossPct)
		}
		var ips []string
		for _, ip := range n.ips {
			ips = append(ips, ip)
		}
		sort.Strings(ips)
		set := "{ " + strings.Join(ips, ", ") + " }"
		fmt.Fprintf(&b, "add rule inet %s cut_in ip saddr %s ip daddr %s numgen random mod 100 < %d drop\n", nftTable, set, set, s.LossPct)
	}
	return runNft(b.String())
}

// Rules returns the current rule set as nft lists it (for failure reports).
func (n *Net) Rules() string {
	out, err := exec.Command("nft", "list", "table", "inet", nftTable).CombinedOutput()
	if err != nil {
		return fmt.Sprintf("(nft list: %v: %s)", err, out)
	}
	return string(out)
}

func runNft(script string) error {
	cmd := exec.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("nemesis: nft: %v: %s\nscript:\n%s", err, strings.TrimSpace(out.String()), script)
	}
	return nil
}

// Partition cuts every link between different groups, both ways. Nodes in
// no group keep all their links.
func Partition(groups ...[]string) NetState {
	var s NetState
	for i, g := range groups {
		for j, h := range groups {
			if i == j {
				continue
			}
			for _, a := range g {
				for _, b := range h {
					s.Cuts = append(s.Cuts, [2]string{a, b})
				}
			}
		}
	}
	return normalize(s)
}

// Isolated cuts node off from every other node, both ways.
func Isolated(node string, all []string) NetState {
	return Partition([]string{node}, without(all, node))
}

// Bridge cuts the two sides off from each other, both ways, except through
// bridge, which keeps its links to both sides.
func Bridge(left []string, bridge string, right []string) NetState {
	return Partition(left, right)
}

// OneWay drops packets from → to only.
func OneWay(pairs ...[2]string) NetState { return normalize(NetState{Cuts: pairs}) }

// Loss drops pct% of the packets between any two nodes.
func Loss(pct int) NetState { return NetState{LossPct: pct} }

func without(all []string, drop ...string) []string {
	var out []string
	for _, a := range all {
		keep := true
		for _, d := range drop {
			if a == d {
				keep = false
			}
		}
		if keep {
			out = append(out, a)
		}
	}
	return out
}
