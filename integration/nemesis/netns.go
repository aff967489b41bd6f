package nemesis

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const (
	// envNetns marks the re-executed test binary: its value is the name of
	// the one test it runs inside the namespace.
	envNetns = "KELPIE_NEMESIS_NETNS"
	// envParentNetns carries the parent's network namespace identity, so
	// that the child can refuse to touch a namespace that is not private.
	envParentNetns = "KELPIE_NEMESIS_PARENT_NETNS"
	// EnvRequire: set to 1 (CI does) to fail instead of skipping when the
	// fault-injection tests cannot run (not root, no nft, no namespaces).
	EnvRequire = "KELPIE_REQUIRE_NEMESIS"
	// childTimeoutMargin is kept between the child's -test.timeout and the
	// parent's deadline, so that the child times out first and reports.
	childTimeoutMargin = 30 * time.Second
)

// Inside reports whether this process is the re-executed child of test name.
func Inside(name string) bool { return os.Getenv(envNetns) == name }

// PrivateNetns makes the calling test run inside a private network namespace.
//
// In the test binary started by go test, it checks the prerequisites (root,
// nft), re-executes the binary for this test only, in a new network
// namespace (CLONE_NEWNET), relays its output, fails if it failed, and
// returns false: the caller returns at once. Inside the re-executed binary
// it checks that the namespace is private, brings lo up and returns true:
// the caller runs the scenario. The namespace disappears with the last
// process in it.
//
// Without root or nft it skips with a loud message, or fails when
// KELPIE_REQUIRE_NEMESIS=1.
func PrivateNetns(t *testing.T) bool {
	t.Helper()
	if Inside(t.Name()) {
		if err := checkPrivate(); err != nil {
			t.Fatalf("nemesis: refusing to run: %v", err)
		}
		if err := loUp(); err != nil {
			t.Fatalf("nemesis: bringing lo up in the private namespace: %v", err)
		}
		return true
	}
	if reason := missingPrereq(); reason != "" {
		SkipOrFail(t, reason)
		return false
	}
	reexec(t)
	return false
}

// SkipOrFail skips t loudly, or fails it when KELPIE_REQUIRE_NEMESIS=1.
func SkipOrFail(t *testing.T, reason string) {
	t.Helper()
	msg := "NEMESIS TEST NOT RUN: " + reason + " (fault injection needs root and nft to cut links inside a private network namespace; set " + EnvRequire + "=1 to make this a failure)"
	if os.Getenv(EnvRequire) == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

func missingPrereq() string {
	if os.Geteuid() != 0 {
		return fmt.Sprintf("not root (euid %d)", os.Geteuid())
	}
	if _, err := exec.LookPath("nft"); err != nil {
		return "nft (nftables) not found in PATH"
	}
	return ""
}

func netnsID() (string, error) { return os.Readlink("/proc/self/ns/net") }

// checkPrivate verifies that this process is not in its parent's network
// namespace (nor in init's), so that nothing done here reaches the host.
func checkPrivate() error {
	self, err := netnsID()
	if err != nil {
		return fmt.Errorf("cannot identify the network namespace: %w", err)
	}
	parent := os.Getenv(envParentNetns)
	if parent == "" || parent == self {
		return fmt.Errorf("network namespace %s is not private (parent %q)", self, parent)
	}
	if initNS, err := os.Readlink("/proc/1/ns/net"); err == nil && initNS == self {
		return fmt.Errorf("network namespace %s is init's", self)
	}
	return nil
}

// loUp brings the loopback interface up (SIOCSIFFLAGS), without needing the
// ip tool.
func loUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("SIOCGIFFLAGS: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("SIOCSIFFLAGS: %w", err)
	}
	return nil
}

// reexec runs this test binary again for t only, in a new network
// namespace, relaying its output line by line.
func reexec(t *testing.T) {
	t.Helper()
	parentNS, err := netnsID()
	if err != nil {
		SkipOrFail(t, "cannot read /proc/self/ns/net: "+err.Error())
		return
	}
	timeout := time.Duration(0) // none, like the parent's
	if d, ok := t.Deadline(); ok {
		timeout = time.Until(d) - childTimeoutMargin
		if timeout < time.Minute {
			t.Fatalf("nemesis: only %s left before the test deadline", time.Until(d).Round(time.Second))
		}
	}
	args := []string{"-test.run", "^" + regexp.QuoteMeta(t.Name()) + "$", "-test.count", "1", "-test.v",
		"-test.timeout", timeout.Round(time.Second).String()}
	if testing.Short() {
		args = append(args, "-test.short")
	}
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), envNetns+"="+t.Name(), envParentNetns+"="+parentNS)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Pdeathsig: syscall.SIGKILL}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	var skipped, passed bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "--- SKIP: "+t.Name()+" "):
				skipped = true
			case strings.HasPrefix(line, "--- PASS: "+t.Name()+" "):
				passed = true
			}
			t.Log("│ " + line)
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	start := time.Now()
	err = cmd.Start()
	if err != nil {
		pw.Close()
		wg.Wait()
		if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EINVAL) {
			SkipOrFail(t, "cannot create a network namespace (CLONE_NEWNET): "+err.Error())
			return
		}
		t.Fatalf("nemesis: re-executing the test binary: %v", err)
	}
	err = cmd.Wait()
	pw.Close()
	wg.Wait()
	took := time.Since(start).Round(100 * time.Millisecond)
	recordTime(t.Name(), took, err == nil && passed && !skipped)
	switch {
	case err != nil:
		t.Fatalf("nemesis: %s failed inside its network namespace after %s: %v (its output is above)", t.Name(), took, err)
	case skipped:
		t.Skipf("nemesis: %s skipped inside its network namespace", t.Name())
	case !passed:
		t.Fatalf("nemesis: %s did not report PASS inside its network namespace (its output is above)", t.Name())
	default:
		t.Logf("nemesis: %s passed inside its private network namespace in %s", t.Name(), took)
	}
}

// EnvTimes names a file to which every namespaced test appends one line with
// its outcome and duration (make integration prints it at the end, so that a
// quiet go test run still reports per-scenario times).
const EnvTimes = "KELPIE_NEMESIS_TIMES"

func recordTime(name string, took time.Duration, ok bool) {
	path := os.Getenv(EnvTimes)
	if path == "" {
		return
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	outcome := "pass"
	if !ok {
		outcome = "FAIL"
	}
	fmt.Fprintf(f, "%-40s %s %6.1fs\n", name, outcome, took.Seconds())
}
