package fs

import (
	"fmt"
	"testing"

	"github.com/bucketfs/bucketfs/store"
)

// TestLogOnceBounded checks that the log-once set stops growing at
// maxLoggedOnce and counts the warnings it no longer logs.
func TestLogOnceBounded(t *testing.T) {
	d := testDir(t, Config{Store: store.NewFake(), Bucket: "b", Log: discardLog()})
	for i := range maxLoggedOnce + 100 {
		d.m.logOnce("bad key", "b", fmt.Sprint(i))
	}
	d.m.logOnce("bad key", "b", "0") // remembered: neither logged nor counted
	if n := len(d.m.logged); n != maxLoggedOnce {
		t.Errorf("log-once set holds %d, want %d", n, maxLoggedOnce)
	}
	if n := d.m.cfg.Counters.WarningsSuppressed.Load(); n != 100 {
		t.Errorf("%d warnings suppressed, want 100", n)
	}
}
