package main

import (
	"bytes"
	"strings"
	"testing"

	bfs "github.com/bucketfs/bucketfs/fs"
	"github.com/bucketfs/bucketfs/prefetch"
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
	rp, err := prefetch.New(store.NewFake(), readOptions(o, l))
	if err != nil {
		t.Fatal(err)
	}
	defer rp.Close()
	table := counterTable(rp, &store.S3{}, &bfs.Counters{})
	if err := table.Check(); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	registerCounters(reg, table)
	if got := table.Snapshot()["budget_mismatches"]; got != 0 {
		t.Fatalf("budget_mismatches = %d before any release", got)
	}

	rp.Budget().Release(4096) // nothing is held

	if got := table.Snapshot()["budget_mismatches"]; got != 1 {
		t.Errorf("stats budget_mismatches = %d, want 1", got)
	}
	if got := table.Snapshot()["budget_used_bytes"]; got != 0 {
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

// TestEveryCounterIsAMetric: every key of user.bucketfs.stats is exposed
// as the metric its name gives, with or without a disk cache.
func TestEveryCounterIsAMetric(t *testing.T) {
	for _, args := range [][]string{
		{"mount", "bkt", "/mnt"},
		{"mount", "--cache-dir", t.TempDir(), "bkt", "/mnt"},
	} {
		o, err := parse(t, args...)
		if err != nil {
			t.Fatal(err)
		}
		rp, err := prefetch.New(store.NewFake(), readOptions(o, logrus.New()))
		if err != nil {
			t.Fatal(err)
		}
		table := counterTable(rp, &store.S3{}, &bfs.Counters{})
		reg := prometheus.NewRegistry()
		registerCounters(reg, table)
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		metrics := map[string]bool{}
		for _, mf := range mfs {
			metrics[mf.GetName()] = true
		}
		for _, c := range table {
			if !metrics[c.Metric()] {
				t.Errorf("%v: stats key %s has no metric %s", args, c.Name, c.Metric())
			}
		}
		if len(metrics) != len(table) || len(table.Snapshot()) != len(table) {
			t.Errorf("%v: %d metrics, %d stats keys for %d counters", args, len(metrics), len(table.Snapshot()), len(table))
		}
		rp.Close()
	}
}
