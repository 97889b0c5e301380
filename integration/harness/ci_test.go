package harness

import (
	"runtime"
	"strings"
	"testing"
)

// TestSuiteVerdict: the end-to-end suite runs when it can mount; when it
// cannot, it fails as root or in CI and skips only for a developer without
// FUSE.
func TestSuiteVerdict(t *testing.T) {
	for _, tc := range []struct {
		name     string
		fuseOK   bool
		root, ci bool
		want     Verdict
	}{
		{"FUSE usable", true, false, false, Run},
		{"FUSE usable in CI", true, false, true, Run},
		{"developer without FUSE", false, false, false, Skip},
		{"CI without FUSE", false, false, true, Fail},
		{"root without FUSE", false, true, false, Fail},
		{"root in CI without FUSE", false, true, true, Fail},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, msg := SuiteVerdict(tc.fuseOK, "/dev/fuse is missing", tc.root, tc.ci)
			if got != tc.want {
				t.Errorf("verdict %v (%q), want %v", got, msg, tc.want)
			}
			if got != Run && (msg == "" || !strings.Contains(msg, "/dev/fuse is missing")) {
				t.Errorf("message %q does not say why", msg)
			}
		})
	}
}

// TestInCI reads the CI variable as CI systems set it.
func TestInCI(t *testing.T) {
	for v, want := range map[string]bool{"": false, "0": false, "false": false, "FALSE": false, "true": true, "1": true, "yes": true} {
		t.Setenv("CI", v)
		if got := InCI(); got != want {
			t.Errorf("CI=%q: InCI() = %v, want %v", v, got, want)
		}
	}
}

// TestRequire: a missing prerequisite fails in CI and skips elsewhere.
func TestRequire(t *testing.T) {
	for _, ci := range []string{"", "true"} {
		t.Setenv("CI", ci)
		rec := &recorder{}
		done := make(chan struct{})
		go func() { defer close(done); Require(rec, false, "no tmpfs") }()
		<-done
		if ci == "" && (!rec.skipped || rec.failed) {
			t.Errorf("CI unset: skipped %v failed %v, want a skip", rec.skipped, rec.failed)
		}
		if ci != "" && (!rec.failed || rec.skipped) {
			t.Errorf("CI=%s: skipped %v failed %v, want a failure", ci, rec.skipped, rec.failed)
		}
	}
	rec := &recorder{}
	Require(rec, true, "present")
	if rec.skipped || rec.failed {
		t.Error("a present prerequisite skipped or failed")
	}
}

// recorder is a testing.TB that records Skip and Fatal; both end the
// calling goroutine, as the real ones do.
type recorder struct {
	testing.TB
	skipped, failed bool
}

func (r *recorder) Helper() {}
func (r *recorder) Skip(...any) {
	r.skipped = true
	runtime.Goexit()
}
func (r *recorder) Fatalf(string, ...any) {
	r.failed = true
	runtime.Goexit()
}
