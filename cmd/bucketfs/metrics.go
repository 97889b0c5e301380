package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/bucketfs/bucketfs/counters"
	"github.com/bucketfs/bucketfs/store"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// meteredStore counts and times every request to the object store by
// operation (the S3 API's name) and outcome: it wraps every method of
// store.Store, reads and writes alike (TestMeteredStoreEveryOp checks
// that none is left to the embedded store).
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
			Help:    "Time until the object store answered (for GetObject: the headers; for writes: after the whole body), retries included.",
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
	case errors.Is(err, store.ErrNotImplemented):
		return "not_implemented"
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

func (m *meteredStore) Put(ctx context.Context, in store.PutInput) (*store.Object, error) {
	start := time.Now()
	out, err := m.Store.Put(ctx, in)
	m.done("PutObject", start, err)
	return out, err
}

func (m *meteredStore) CreateMultipart(ctx context.Context, in store.CreateMultipartInput) (string, error) {
	start := time.Now()
	out, err := m.Store.CreateMultipart(ctx, in)
	m.done("CreateMultipartUpload", start, err)
	return out, err
}

func (m *meteredStore) UploadPart(ctx context.Context, in store.UploadPartInput) (string, error) {
	start := time.Now()
	out, err := m.Store.UploadPart(ctx, in)
	m.done("UploadPart", start, err)
	return out, err
}

func (m *meteredStore) UploadPartCopy(ctx context.Context, in store.UploadPartCopyInput) (string, error) {
	start := time.Now()
	out, err := m.Store.UploadPartCopy(ctx, in)
	m.done("UploadPartCopy", start, err)
	return out, err
}

func (m *meteredStore) CompleteMultipart(ctx context.Context, in store.CompleteMultipartInput) (*store.Object, error) {
	start := time.Now()
	out, err := m.Store.CompleteMultipart(ctx, in)
	m.done("CompleteMultipartUpload", start, err)
	return out, err
}

func (m *meteredStore) AbortMultipart(ctx context.Context, bucket, key, uploadID string) error {
	start := time.Now()
	err := m.Store.AbortMultipart(ctx, bucket, key, uploadID)
	m.done("AbortMultipartUpload", start, err)
	return err
}

func (m *meteredStore) Copy(ctx context.Context, in store.CopyInput) (*store.Object, error) {
	start := time.Now()
	out, err := m.Store.Copy(ctx, in)
	m.done("CopyObject", start, err)
	return out, err
}

func (m *meteredStore) Delete(ctx context.Context, bucket, key string) error {
	start := time.Now()
	err := m.Store.Delete(ctx, bucket, key)
	m.done("DeleteObject", start, err)
	return err
}

// registerCounters exposes the daemon's counters, read when scraped,
// under the names the table gives them.
func registerCounters(reg prometheus.Registerer, t counters.Table) {
	for _, c := range t {
		value := func() float64 { return float64(c.Value()) }
		if c.Kind == counters.KindCounter {
			reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: c.Metric(), Help: c.Help}, value))
		} else {
			reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: c.Metric(), Help: c.Help}, value))
		}
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
