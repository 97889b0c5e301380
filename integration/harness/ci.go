package harness

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// InCI reports whether the CI environment variable is set (to anything but
// "", "0" or "false"). In CI a missing prerequisite fails the run: a green
// run that skipped the end-to-end suite would prove nothing.
func InCI() bool {
	v := strings.TrimSpace(os.Getenv("CI"))
	return v != "" && v != "0" && !strings.EqualFold(v, "false")
}

// Verdict is what the suite does about a prerequisite.
type Verdict int

const (
	Run Verdict = iota
	Skip
	Fail
)

// SuiteVerdict decides whether the end-to-end suite runs, given whether
// FUSE mounts can be made (and why not), whether this process is root and
// whether it runs in CI, and returns the line to print when it does not
// run. Root without FUSE is broken, not unprivileged, so it fails; in CI
// everything that cannot mount fails; elsewhere a developer without FUSE
// skips.
func SuiteVerdict(fuseOK bool, why string, root, ci bool) (Verdict, string) {
	switch {
	case fuseOK:
		return Run, ""
	case root:
		return Fail, "FAIL: running as root but FUSE is unusable: " + why
	case ci:
		return Fail, "FAIL: CI is set and the integration tests cannot mount: " + why + " (run as root with /dev/fuse)"
	}
	return Skip, "SKIP: integration tests need FUSE: " + why
}

// Require skips t when a prerequisite is missing (ok false, why says
// which), except in CI, where it fails t.
func Require(t testing.TB, ok bool, why string) {
	t.Helper()
	if ok {
		return
	}
	if InCI() {
		t.Fatalf("%s (CI is set: a missing prerequisite fails)", why)
	}
	t.Skip(why)
}

// RequireRoot is Require for tests that must run as root.
func RequireRoot(t testing.TB, what string) {
	t.Helper()
	Require(t, os.Geteuid() == 0, fmt.Sprintf("%s needs root", what))
}
