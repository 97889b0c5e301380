package main

import (
	"bytes"
	"strings"
	"testing"

	bfs "github.com/bucketfs/bucketfs/fs"
	"github.com/bucketfs/bucketfs/store"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
)

// TestBudgetMismatchesReported: a read-ahead budget release that does not
// match what was held (an accounting bug) leaves the daemon running and
// shows in the stats (user.bucketfs.stats), in the Prometheus metrics and
// in the log.
func TestBudgetMismatchesReported(t *testing.T) {
	o, err := parse(t, "mount", "--cache-memory", "64MiB", "bkt", "/mnt")
	if err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	l := logrus.New()
	l.SetOutput(&logged)
	rp, err := newReadPath(store.NewFake(), o, logrus.NewEntry(l))
	if err != nil {
		t.Fatal(err)
	}
	defer rp.close()
	reg := prometheus.NewRegistry()
	registerCounters(reg, rp, &store.S3{}, &bfs.Counters{})
	if got := rp.stats()["budget_mismatches"]; got != 0 {
		t.Fatalf("budget_mismatches = %d before any release", got)
	}

	rp.mgr.Budget().Release(4096) // nothing is held

	if got := rp.stats()["budget_mismatches"]; got != 1 {
		t.Errorf("stats budget_mismatches = %d, want 1", got)
	}
	if got := rp.stats()["budget_used_bytes"]; got != 0 {
		t.Errorf("stats budget_used_bytes = %d, want 0", got)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, mf := range mfs {
		if mf.GetName() == "bucketfs_budget_mismatches_total" {
			found = true
			if v := mf.GetMetric()[0].GetCounter().GetValue(); v != 1 {
				t.Errorf("bucketfs_budget_mismatches_total = %v, want 1", v)
			}
		}
	}
	if !found {
		t.Error("bucketfs_budget_mismatches_total not registered")
	}
	if !strings.Contains(logged.String(), "released=4096") {
		t.Errorf("log = %q, want a line with released=4096", logged.String())
	}
}
