package prefetch

import (
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"
)

// TestSlowReadLogged: a read that takes SlowRead or longer is counted and
// logged with what it waited for (the block fetched for it, or an exact
// GET); a read served at once is not.
func TestSlowReadLogged(t *testing.T) {
	// Reads from memory take microseconds; even a loaded machine keeps
	// them under 100 ms.
	fx := newFixture(t, 8*mib, 200*time.Millisecond, 32*mib)
	logger, hook := test.NewNullLogger()
	fx.m.cfg.SlowRead = 100 * time.Millisecond
	fx.m.cfg.Log = logrus.NewEntry(logger)
	r := fx.m.NewReader(fx.v)
	defer r.Close()

	fx.read(t, r, 0, 64<<10)        // starts the stream: waits for block 0
	fx.read(t, r, 64<<10, 64<<10)   // block 0 is there
	fx.read(t, r, 6*mib+5, 100<<10) // far off the stream: an exact GET

	if got := fx.m.Stats.SlowReads.Load(); got != 2 {
		t.Errorf("SlowReads = %d, want 2", got)
	}
	entries := hook.AllEntries()
	if len(entries) != 2 {
		t.Fatalf("%d log entries, want 2: %v", len(entries), entries)
	}
	for i, want := range []struct{ class, waits string }{
		{"stream", "block 0 (fetched for this read"},
		{"random", "exact GET of 102400 bytes at block 6"},
	} {
		e := entries[i]
		if e.Message != "slow read" || e.Level != logrus.InfoLevel {
			t.Errorf("entry %d: %s at %v", i, e.Message, e.Level)
		}
		if e.Data["class"] != want.class || !strings.Contains(e.Data["waits"].(string), want.waits) {
			t.Errorf("entry %d: class %v, waits %q; want %s, %q", i, e.Data["class"], e.Data["waits"], want.class, want.waits)
		}
		if e.Data["key"] != "obj" {
			t.Errorf("entry %d: key %v", i, e.Data["key"])
		}
	}
}

// TestSlowReadOff: with SlowRead 0 nothing is counted or logged.
func TestSlowReadOff(t *testing.T) {
	fx := newFixture(t, 2*mib, 30*time.Millisecond, 32*mib)
	logger, hook := test.NewNullLogger()
	fx.m.cfg.Log = logrus.NewEntry(logger)
	r := fx.m.NewReader(fx.v)
	defer r.Close()
	fx.read(t, r, 0, 64<<10)
	if n := fx.m.Stats.SlowReads.Load(); n != 0 || len(hook.AllEntries()) != 0 {
		t.Errorf("SlowReads %d, %d entries; want none", n, len(hook.AllEntries()))
	}
}
