package integration

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// Golden files for kelpiectl's table output. A table is first checked for
// alignment (every cell starts where its column's header starts), then its
// volatile cells (addresses, tokens, indexes, terms, durations, boot IDs)
// are masked, runs of spaces are collapsed and the result is compared with
// testdata/golden/NAME.txt. Run with -update to rewrite the files:
//
//	go test ./integration -run TestKelpiectlVerbs -update

var update = flag.Bool("update", false, "rewrite the golden files of kelpiectl's table output")

const masked = "<*>"

// mask describes what is volatile in one command's output.
type mask struct {
	keys []string // key/value tables: mask the value of these keys
	cols []string // column tables: mask the cells of these columns
	res  []maskRE // then: regular expressions over the whole text
}

type maskRE struct {
	re   *regexp.Regexp
	repl string
}

func re(expr, repl string) maskRE { return maskRE{regexp.MustCompile(expr), repl} }

var (
	spaceRun = regexp.MustCompile(` {2,}`)
	// headerCell is an upper-case column title ("GOSSIP ADDR", "INC").
	headerCell = regexp.MustCompile(`^[A-Z][A-Z .-]*$`)
)

// splitCells splits a table line at runs of two or more spaces and returns
// each cell's text and starting column (in runes, as text/tabwriter counts).
func splitCells(line string) (cells []string, starts []int) {
	r := []rune(line)
	pos := 0
	for i := 0; i < len(r); {
		if r[i] != ' ' || i+1 >= len(r) || r[i+1] != ' ' {
			i++
			continue
		}
		j := i
		for j < len(r) && r[j] == ' ' {
			j++
		}
		cells, starts = append(cells, string(r[pos:i])), append(starts, pos)
		pos, i = j, j
	}
	if pos < len(r) {
		cells, starts = append(cells, string(r[pos:])), append(starts, pos)
	}
	return cells, starts
}

func isHeader(line string) bool {
	cells, _ := splitCells(strings.TrimRight(line, " "))
	if len(cells) < 2 {
		return false
	}
	for _, c := range cells {
		if !headerCell.MatchString(c) {
			return false
		}
	}
	return true
}

// normalize checks the alignment of every table in out, masks it and
// collapses spaces. Alignment errors are returned, not fatal, so that the
// golden diff is shown too.
func normalize(out string, m mask) (string, []string) {
	var problems []string
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	var res []string
	maskCol := map[string]bool{}
	for _, c := range m.cols {
		maskCol[c] = true
	}
	maskKey := map[string]bool{}
	for _, k := range m.keys {
		maskKey[k] = true
	}
	for i := 0; i < len(lines); i++ {
		line := strings.TrimRight(lines[i], " ")
		if isHeader(line) {
			head, starts := splitCells(line)
			res = append(res, strings.Join(head, "  "))
			for i+1 < len(lines) && strings.TrimSpace(lines[i+1]) != "" {
				i++
				r := []rune(strings.TrimRight(lines[i], " "))
				cells := make([]string, len(starts))
				for j, st := range starts {
					if st > 0 && (len(r) <= st || r[st-1] != ' ' || r[st] == ' ') {
						problems = append(problems, fmt.Sprintf("column %q not aligned in %q", head[j], string(r)))
						break
					}
					end := len(r)
					if j+1 < len(starts) && starts[j+1] < end {
						end = starts[j+1]
					}
					cells[j] = strings.TrimSpace(string(r[st:end]))
					if maskCol[head[j]] {
						cells[j] = masked
					}
				}
				res = append(res, strings.Join(cells, "  "))
			}
			continue
		}
		// A key/value block: consecutive lines "Key<2+ spaces>Value" whose
		// values start at one offset.
		j := i
		valueAt := -1
		for j < len(lines) {
			l := strings.TrimRight(lines[j], " ")
			cells, starts := splitCells(l)
			if len(cells) < 2 || isHeader(l) {
				break
			}
			if valueAt == -1 {
				valueAt = starts[1]
			} else if starts[1] != valueAt {
				problems = append(problems, fmt.Sprintf("value not aligned in %q", l))
			}
			key, value := cells[0], strings.Join(cells[1:], "  ")
			if maskKey[key] {
				value = masked
			}
			res = append(res, key+"  "+value)
			j++
		}
		if j > i {
			i = j - 1
			continue
		}
		res = append(res, spaceRun.ReplaceAllString(line, "  "))
	}
	text := strings.Join(res, "\n") + "\n"
	for _, r := range m.res {
		text = r.re.ReplaceAllString(text, r.repl)
	}
	return text, problems
}

// checkGolden compares kelpiectl table output with testdata/golden/name.txt
// after normalize.
func checkGolden(t *testing.T, name, out string, m mask) {
	t.Helper()
	got, problems := normalize(out, m)
	for _, p := range problems {
		t.Errorf("%s: %s\nraw output:\n%s", name, p, out)
	}
	path := filepath.Join("testdata", "golden", name+".txt")
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%s: %v (run with -update to create it)", name, err)
	}
	if got != string(want) {
		t.Errorf("%s: table output differs from %s (run with -update if the change is intended)\n--- got\n%s--- want\n%s--- raw\n%s",
			name, path, got, want, out)
	}
}

func TestNormalize(t *testing.T) {
	out := "epoch 12  index 40  members 2\n" +
		"ID  STATUS  ADDR\n" +
		"s1  active  127.0.0.1:7501\n" +
		"s2  failed  127.0.0.2:7501\n" +
		"\n" +
		"Node       s1\n" +
		"Raft addr  127.0.0.1:7502\n"
	got, problems := normalize(out, mask{keys: []string{"Raft addr"}, cols: []string{"ADDR"},
		res: []maskRE{re(`epoch \d+  index \d+`, "epoch <*>  index <*>")}})
	want := "epoch <*>  index <*>  members 2\nID  STATUS  ADDR\ns1  active  <*>\ns2  failed  <*>\n\nNode  s1\nRaft addr  <*>\n"
	if got != want || len(problems) != 0 {
		t.Fatalf("normalize:\n%s\nwant\n%s\nproblems %v", got, want, problems)
	}
	_, problems = normalize("ID  STATUS\ns1 active\n", mask{})
	if len(problems) == 0 {
		t.Fatal("misaligned table not reported")
	}
	_, problems = normalize("Node  s1\nRaft addr   x\n", mask{})
	if len(problems) == 0 {
		t.Fatal("misaligned key/value block not reported")
	}
	// Columns are counted in runes, as text/tabwriter aligns them.
	got, problems = normalize("ID  LAST  N\ns1  1µs   3\ns2  10s   4\n", mask{cols: []string{"LAST"}})
	if want := "ID  LAST  N\ns1  <*>  3\ns2  <*>  4\n"; got != want || len(problems) != 0 {
		t.Fatalf("normalize with a multi-byte rune: %q %v", got, problems)
	}
}
