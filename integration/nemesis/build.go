package nemesis

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// BuildCmd builds the main package pkg (an import path) into dir with
// main.version set to version and returns the binary's path. Test binaries
// of the process-level suites build kelpied and kelpiectl this way in
// TestMain.
func BuildCmd(dir, pkg, version string) (string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("go tool not found: %w", err)
	}
	out := filepath.Join(dir, filepath.Base(pkg))
	cmd := exec.Command(goBin, "build", "-ldflags", "-X main.version="+version, "-o", out, pkg)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build %s: %w", pkg, err)
	}
	return out, nil
}
