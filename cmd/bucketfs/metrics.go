package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	bfs "github.com/bucketfs/bucketfs/fs"
	"github.com/bucketfs/bucketfs/store"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// meteredStore counts and times every request to the object store by
// operation and outcome.
type meteredStore struct {
	store.Store
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

func newMeteredStore(st store.Store, reg prometheus.Registerer) *meteredStore {
	m := &meteredStore{
		Store: st,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bucketfs_s3_requests_total",
			Help: "Requests to the object store by operation and outcome (after the SDK's retries).",
		}, []string{"op", "outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "bucketfs_s3_request_duration_seconds",
			Help:    "Time until the object store answered (for GetObject: the headers), retries included.",
			Buckets: []float64{.005, .01, .02, .05, .1, .2, .5, 1, 2, 5, 10, 30},
		}, []string{"op"}),
	}
	reg.MustRegister(m.requests, m.latency)
	return m
}

// outcome names how a request ended.
func outcome(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, store.ErrNotFound):
		return "not_found"
	case errors.Is(err, store.ErrAccessDenied):
		return "access_denied"
	case errors.Is(err, store.ErrPreconditionFailed):
		return "changed"
	case errors.Is(err, store.ErrInvalidObjectState):
		return "archived"
	case errors.Is(err, store.ErrRestoreInProgress):
		return "restore_in_progress"
	case errors.Is(err, store.ErrThrottled):
		return "throttled"
	case errors.Is(err, store.ErrUnreachable), errors.Is(err, context.DeadlineExceeded):
		return "unreachable"
	}
	return "error"
}

func (m *meteredStore) done(op string, start time.Time, err error) {
	m.requests.WithLabelValues(op, outcome(err)).Inc()
	m.latency.WithLabelValues(op).Observe(time.Since(start).Seconds())
}

func (m *meteredStore) ListBuckets(ctx context.Context) ([]store.Bucket, error) {
	start := time.Now()
	out, err := m.Store.ListBuckets(ctx)
	m.done("ListBuckets", start, err)
	return out, err
}

func (m *meteredStore) List(ctx context.Context, in store.ListInput) (*store.ListPage, error) {
	start := time.Now()
	out, err := m.Store.List(ctx, in)
	m.done("ListObjectsV2", start, err)
	return out, err
}

func (m *meteredStore) Head(ctx context.Context, bucket, key string) (*store.Object, error) {
	start := time.Now()
	out, err := m.Store.Head(ctx, bucket, key)
	m.done("HeadObject", start, err)
	return out, err
}

func (m *meteredStore) Get(ctx context.Context, in store.GetInput) (*store.GetOutput, error) {
	start := time.Now()
	out, err := m.Store.Get(ctx, in)
	m.done("GetObject", start, err)
	return out, err
}

func (m *meteredStore) Restore(ctx context.Context, in store.RestoreInput) (store.RestoreOutcome, error) {
	start := time.Now()
	out, err := m.Store.Restore(ctx, in)
	m.done("RestoreObject", start, err)
	return out, err
}

// registerCounters exposes the daemon's own counters, read when scraped.
func registerCounters(reg prometheus.Registerer, rp *readPath, s3 *store.S3, tree *bfs.Counters) {
	c, p := &rp.cache.Stats, &rp.mgr.Stats
	counter := func(name, help string, f func() int64, labels prometheus.Labels) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels}, func() float64 { return float64(f()) }))
	}
	gauge := func(name, help string, f func() int64, labels prometheus.Labels) {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: labels}, func() float64 { return float64(f()) }))
	}
	mem, disk := prometheus.Labels{"tier": "memory"}, prometheus.Labels{"tier": "disk"}
	counter("bucketfs_s3_retries_total", "Requests the SDK sent again after a failure.", s3.Retries.Load, nil)
	gauge("bucketfs_s3_connections", "Connections to the object store open now, idle or busy.", s3.Conns.Load, nil)
	counter("bucketfs_random_promoted_blocks_total", "Blocks fetched whole after random reads missed them twice, to fill the disk cache.", p.Promoted.Load, nil)
	counter("bucketfs_slow_reads_total", "Reads that took --log-slow-reads or longer.", p.SlowReads.Load, nil)
	counter("bucketfs_get_resumes_total", "GET bodies resumed from where they stopped after a stall or a cut.", p.Resumes.Load, nil)
	counter("bucketfs_bytes_fetched_total", "Object bytes received from the object store.", p.BytesFetched.Load, nil)
	counter("bucketfs_bytes_read_total", "Bytes returned to readers.", p.BytesRead.Load, nil)
	counter("bucketfs_readahead_used_blocks_total", "Blocks fetched ahead that a reader then read.", p.ReadaheadUsed.Load, nil)
	counter("bucketfs_readahead_wasted_bytes_total", "Bytes fetched ahead that no reader read.", p.ReadaheadWasted.Load, nil)
	gauge("bucketfs_open_files", "Files open for reading.", p.OpenReaders.Load, nil)
	gauge("bucketfs_gets_in_flight", "GET requests under way.", p.InflightGets.Load, nil)
	counter("bucketfs_budget_mismatches_total", "Read-ahead budget releases that did not match what was held (an accounting bug; logged and clamped).", rp.mgr.Budget().Mismatches, nil)
	counter("bucketfs_archived_hits_total", "Opens and reads refused because the object is archived and not restored.", tree.ArchivedHits.Load, nil)
	counter("bucketfs_warnings_suppressed_total", "Once-only warnings (bad keys, name clashes) not logged because the mount already remembers as many as it keeps.", tree.WarningsSuppressed.Load, nil)

	counter("bucketfs_cache_hits_total", "Block lookups served by the cache.", c.Hits.Load, mem)
	counter("bucketfs_cache_misses_total", "Block lookups the cache could not serve.", c.Misses.Load, mem)
	counter("bucketfs_cache_evictions_total", "Blocks evicted to stay inside the cache's size.", c.Evictions.Load, mem)
	gauge("bucketfs_cache_bytes", "Bytes held by the cache.", c.Resident.Load, mem)
	if d := rp.disk; d != nil {
		counter("bucketfs_cache_hits_total", "Block lookups served by the cache.", d.Stats.Hits.Load, disk)
		counter("bucketfs_cache_misses_total", "Block lookups the cache could not serve.", d.Stats.Misses.Load, disk)
		counter("bucketfs_cache_evictions_total", "Blocks evicted to stay inside the cache's size.", d.Stats.Evictions.Load, disk)
		gauge("bucketfs_cache_bytes", "Bytes held by the cache.", d.Stats.Bytes.Load, disk)
		counter("bucketfs_disk_cache_writes_total", "Blocks written to the disk cache.", d.Stats.Writes.Load, nil)
		counter("bucketfs_disk_cache_dropped_total", "Blocks not written to the disk cache (write queue full or no room).", d.Stats.Dropped.Load, nil)
		counter("bucketfs_disk_cache_corrupt_total", "Block files that failed their checksum and were dropped.", d.Stats.Corrupt.Load, nil)
	}
}

// serveMetrics listens on addr and serves reg at /metrics. It fails at
// once when addr cannot be listened on.
func serveMetrics(addr string, reg *prometheus.Registry) (*http.Server, error) {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, fmt.Errorf("--metrics-addr %q: want HOST:PORT, e.g. 127.0.0.1:9100", addr)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-addr: %v", err)
	}
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(l)
	return srv, nil
}
