package main

import (
	"bytes"
	"context"
	"io"
	"reflect"
	"strings"
	"testing"

	bfs "github.com/bucketfs/bucketfs/fs"
	"github.com/bucketfs/bucketfs/prefetch"
	"github.com/bucketfs/bucketfs/store"
	"github.com/bucketfs/bucketfs/write"
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
	table := counterTable(rp, &store.S3{}, &bfs.Counters{}, nil)
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
// as the metric its name gives, with or without a disk cache, with or
// without write-back; a read-only mount has no write_* keys, the others
// have write_pending_files and write_pending_bytes (bucketfs sync reads
// them).
func TestEveryCounterIsAMetric(t *testing.T) {
	for _, args := range [][]string{
		{"mount", "bkt", "/mnt"},
		{"mount", "--cache-dir", t.TempDir(), "bkt", "/mnt"},
		{"mount", "--cache-dir", t.TempDir(), "--write-back", "bkt", "/mnt"},
		{"mount", "--read-only", "bkt", "/mnt"},
	} {
		o, err := parse(t, args...)
		if err != nil {
			t.Fatal(err)
		}
		fake := store.NewFake()
		rp, err := prefetch.New(fake, readOptions(o, logrus.New()))
		if err != nil {
			t.Fatal(err)
		}
		var wm *write.Manager
		if !o.ReadOnly {
			if wm, err = write.New(writeOptions(o, fake, logrus.New(), fsTotal)); err != nil {
				t.Fatal(err)
			}
		}
		table := counterTable(rp, &store.S3{}, &bfs.Counters{}, wm)
		if err := table.Check(); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		snap := table.Snapshot()
		for _, key := range []string{"write_pending_files", "write_pending_bytes"} {
			if _, ok := snap[key]; ok != !o.ReadOnly {
				t.Errorf("%v: stats key %s present %v, want %v", args, key, ok, !o.ReadOnly)
			}
		}
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
		if wm != nil {
			wm.Close(context.Background())
		}
		rp.Close()
	}
}

// TestMeteredStoreEveryOp: every method of store.Store, reads and
// writes, is counted under its S3 operation's name, once per call
// whatever the outcome; a method added to the interface without a
// wrapper (left to the embedded store, uncounted) fails the count.
func TestMeteredStoreEveryOp(t *testing.T) {
	ctx := context.Background()
	fake := store.NewFake()
	fake.CreateBucket("bkt")
	fake.Seed("bkt", "src", []byte("source"))
	body := func() io.ReadSeeker { return strings.NewReader("x") }
	calls := []struct {
		op   string
		call func(s store.Store)
	}{
		{"ListBuckets", func(s store.Store) { s.ListBuckets(ctx) }},
		{"ListObjectsV2", func(s store.Store) { s.List(ctx, store.ListInput{Bucket: "bkt"}) }},
		{"HeadObject", func(s store.Store) { s.Head(ctx, "bkt", "src") }},
		{"GetObject", func(s store.Store) {
			if out, err := s.Get(ctx, store.GetInput{Bucket: "bkt", Key: "src", Length: 1}); err == nil {
				out.Body.Close()
			}
		}},
		{"RestoreObject", func(s store.Store) { s.Restore(ctx, store.RestoreInput{Bucket: "bkt", Key: "src", Days: 1}) }},
		{"PutObject", func(s store.Store) { s.Put(ctx, store.PutInput{Bucket: "bkt", Key: "new", Body: body(), Size: 1}) }},
		{"CreateMultipartUpload", func(s store.Store) { s.CreateMultipart(ctx, store.CreateMultipartInput{Bucket: "bkt", Key: "mp"}) }},
		{"UploadPart", func(s store.Store) {
			s.UploadPart(ctx, store.UploadPartInput{Bucket: "bkt", Key: "mp", UploadID: "none", Part: 1, Body: body(), Size: 1})
		}},
		{"UploadPartCopy", func(s store.Store) {
			s.UploadPartCopy(ctx, store.UploadPartCopyInput{Bucket: "bkt", Key: "mp", UploadID: "none", Part: 1, SrcBucket: "bkt", SrcKey: "src", Length: 1})
		}},
		{"CompleteMultipartUpload", func(s store.Store) {
			s.CompleteMultipart(ctx, store.CompleteMultipartInput{Bucket: "bkt", Key: "mp", UploadID: "none"})
		}},
		{"AbortMultipartUpload", func(s store.Store) { s.AbortMultipart(ctx, "bkt", "mp", "none") }},
		{"CopyObject", func(s store.Store) {
			s.Copy(ctx, store.CopyInput{SrcBucket: "bkt", SrcKey: "src", Bucket: "bkt", Key: "dst"})
		}},
		{"DeleteObject", func(s store.Store) { s.Delete(ctx, "bkt", "dst") }},
	}
	if n := reflect.TypeFor[store.Store]().NumMethod(); n != len(calls) {
		t.Fatalf("store.Store has %d methods, the test calls %d: wrap the new ones in meteredStore and list them here", n, len(calls))
	}
	reg := prometheus.NewRegistry()
	m := newMeteredStore(fake, reg)
	for _, c := range calls {
		c.call(m)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "bucketfs_s3_requests_total" {
			continue
		}
		for _, metric := range mf.GetMetric() {
			for _, l := range metric.GetLabel() {
				if l.GetName() == "op" {
					got[l.GetValue()] += metric.GetCounter().GetValue()
				}
			}
		}
	}
	for _, c := range calls {
		if got[c.op] != 1 {
			t.Errorf("op %s counted %v times, want 1", c.op, got[c.op])
		}
	}
	if len(got) != len(calls) {
		t.Errorf("ops counted: %v", got)
	}
}
