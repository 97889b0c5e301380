package csi

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bucketfs/bucketfs/store"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// fakeStore is an in-memory ObjectStore: buckets of objects with their
// metadata.
type fakeStore struct {
	mu            sync.Mutex
	buckets       map[string]map[string]store.Object // GUARDED_BY(mu)
	taken         map[string]bool                    // bucket names of another account; GUARDED_BY(mu)
	noIfNoneMatch bool                               // the server refuses If-None-Match
	configs       []StoreConfig                      // every StoreConfig a request built; GUARDED_BY(mu)
	onDelete      func(keys []string)                // called by DeleteKeys, under mu; set before use
}

func newFakeStore(buckets ...string) *fakeStore {
	f := &fakeStore{buckets: map[string]map[string]store.Object{}, taken: map[string]bool{}}
	for _, b := range buckets {
		f.buckets[b] = map[string]store.Object{}
	}
	return f
}

// newStore is the driver's NewStoreFunc, recording the config.
func (f *fakeStore) newStore(_ context.Context, c StoreConfig) (ObjectStore, error) {
	f.mu.Lock()
	f.configs = append(f.configs, c)
	f.mu.Unlock()
	return f, nil
}

func notFound(op, bucket, key, code string) error {
	return &store.Error{Op: op, Bucket: bucket, Key: key, Status: 404, Code: code, Kind: store.ErrNotFound}
}

func (f *fakeStore) seed(bucket, key string, meta map[string]string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.buckets[bucket] == nil {
		f.buckets[bucket] = map[string]store.Object{}
	}
	f.buckets[bucket][key] = store.Object{Key: key, Metadata: meta}
}

func (f *fakeStore) keys(bucket string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ks []string
	for k := range f.buckets[bucket] {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func (f *fakeStore) hasBucket(b string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.buckets[b]
	return ok
}

func (f *fakeStore) Head(_ context.Context, bucket, key string) (*store.Object, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, ok := f.buckets[bucket]
	if !ok {
		return nil, notFound("HeadObject", bucket, key, "NotFound")
	}
	o, ok := b[key]
	if !ok {
		return nil, notFound("HeadObject", bucket, key, "NotFound")
	}
	return &o, nil
}

func (f *fakeStore) Put(_ context.Context, in store.PutInput) (*store.Object, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if in.IfNoneMatch && f.noIfNoneMatch {
		return nil, &store.Error{Op: "PutObject", Bucket: in.Bucket, Key: in.Key, Status: 501, Kind: store.ErrNotImplemented}
	}
	b, ok := f.buckets[in.Bucket]
	if !ok {
		return nil, notFound("PutObject", in.Bucket, in.Key, "NoSuchBucket")
	}
	if _, exists := b[in.Key]; exists && in.IfNoneMatch {
		return nil, &store.Error{Op: "PutObject", Bucket: in.Bucket, Key: in.Key, Status: 412, Kind: store.ErrPreconditionFailed}
	}
	body, _ := io.ReadAll(in.Body)
	o := store.Object{Key: in.Key, Size: int64(len(body)), Metadata: in.Metadata}
	b[in.Key] = o
	return &o, nil
}

func (f *fakeStore) List(_ context.Context, in store.ListInput) (*store.ListPage, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, ok := f.buckets[in.Bucket]
	if !ok {
		return nil, notFound("ListObjectsV2", in.Bucket, "", "NoSuchBucket")
	}
	var ks []string
	for k := range b {
		if strings.HasPrefix(k, in.Prefix) && k > in.Token {
			ks = append(ks, k)
		}
	}
	sort.Strings(ks)
	max := int(in.MaxKeys)
	if max == 0 {
		max = 1000
	}
	page := &store.ListPage{}
	if len(ks) > max {
		ks = ks[:max]
		page.NextToken = ks[max-1]
	}
	for _, k := range ks {
		page.Objects = append(page.Objects, b[k])
	}
	return page, nil
}

func (f *fakeStore) DeleteKeys(_ context.Context, bucket string, keys []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, ok := f.buckets[bucket]
	if !ok {
		return notFound("DeleteObjects", bucket, "", "NoSuchBucket")
	}
	if len(keys) > store.MaxDeleteKeys {
		return errors.New("too many keys")
	}
	if f.onDelete != nil {
		f.onDelete(keys)
	}
	for _, k := range keys {
		delete(b, k)
	}
	return nil
}

func (f *fakeStore) CreateBucket(_ context.Context, bucket string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.taken[bucket] {
		return &store.Error{Op: "CreateBucket", Bucket: bucket, Status: 409, Code: "BucketAlreadyExists", Kind: store.ErrBucketExists}
	}
	if _, ok := f.buckets[bucket]; ok {
		return &store.Error{Op: "CreateBucket", Bucket: bucket, Status: 409, Code: "BucketAlreadyOwnedByYou", Kind: store.ErrBucketExists}
	}
	f.buckets[bucket] = map[string]store.Object{}
	return nil
}

func (f *fakeStore) DeleteBucket(_ context.Context, bucket string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, ok := f.buckets[bucket]
	if !ok {
		return notFound("DeleteBucket", bucket, "", "NoSuchBucket")
	}
	if len(b) > 0 {
		return &store.Error{Op: "DeleteBucket", Bucket: bucket, Status: 409, Code: "BucketNotEmpty", Kind: store.ErrOther}
	}
	delete(f.buckets, bucket)
	return nil
}

// fakeKernel stands in for the mount table: paths with stacks of
// filesystem types, some of them dead.
type fakeKernel struct {
	mu       sync.Mutex
	mounted  map[string][]string // GUARDED_BY(mu)
	dead     map[string]bool     // GUARDED_BY(mu)
	unmounts []string            // "path lazy" or "path plain"; GUARDED_BY(mu)
}

func newFakeKernel() *fakeKernel {
	return &fakeKernel{mounted: map[string][]string{}, dead: map[string]bool{}}
}

func (k *fakeKernel) checker() *mountChecker {
	return &mountChecker{
		mounts: func(path string) ([]string, error) {
			k.mu.Lock()
			defer k.mu.Unlock()
			return append([]string(nil), k.mounted[path]...), nil
		},
		stat: func(path string) error {
			k.mu.Lock()
			d := k.dead[path] && len(k.mounted[path]) > 0
			k.mu.Unlock()
			if d {
				return &os.PathError{Op: "stat", Path: path, Err: syscall.ENOTCONN}
			}
			_, err := os.Stat(path)
			return err
		},
		unmount: func(path string, flags int) error {
			k.mu.Lock()
			defer k.mu.Unlock()
			s := k.mounted[path]
			if len(s) == 0 {
				return syscall.EINVAL
			}
			if k.dead[path] && flags&unix.MNT_DETACH == 0 {
				k.unmounts = append(k.unmounts, path+" plain-failed")
				return syscall.EIO
			}
			kind := "plain"
			if flags&unix.MNT_DETACH != 0 {
				kind = "lazy"
			}
			k.unmounts = append(k.unmounts, path+" "+kind)
			k.mounted[path] = s[:len(s)-1]
			delete(k.dead, path)
			return nil
		},
		statTimeout: time.Second,
	}
}

func (k *fakeKernel) mount(path, typ string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.mounted[path] = append(k.mounted[path], typ)
}

// kill makes the mount at path dead, as when its daemon is killed.
func (k *fakeKernel) kill(path string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.dead[path] = true
}

func (k *fakeKernel) depth(path string) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.mounted[path])
}

func (k *fakeKernel) unmountLog() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]string(nil), k.unmounts...)
}

// fakeMounter mounts in a fakeKernel and records each request.
type fakeMounter struct {
	k         *fakeKernel
	mu        sync.Mutex
	requests  []MountRequest // GUARDED_BY(mu)
	fail      error          // the next Mount fails with it; GUARDED_BY(mu)
	noMount   bool           // Mount says yes but mounts nothing; GUARDED_BY(mu)
	abandoned []Mounted      // GUARDED_BY(mu)
}

func (m *fakeMounter) Name() string { return "fake" }

func (m *fakeMounter) Mount(_ context.Context, r MountRequest) (Mounted, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.requests = append(m.requests, r)
	if err := m.fail; err != nil {
		m.fail = nil
		return Mounted{}, err
	}
	if !m.noMount {
		m.k.mount(r.Target, fsType)
	}
	return Mounted{PID: 4000 + len(m.requests)}, nil
}

func (m *fakeMounter) Abandon(x Mounted) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.abandoned = append(m.abandoned, x)
}

func (m *fakeMounter) calls() []MountRequest {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]MountRequest(nil), m.requests...)
}

// syncBuffer is a log sink safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testDriver is a driver with both services on fakes, logging at debug
// into a buffer.
type testDriver struct {
	*Driver
	store   *fakeStore
	kernel  *fakeKernel
	mounter *fakeMounter
	logs    *syncBuffer
	dir     string // state directory
}

func newTestDriver(t *testing.T, buckets ...string) *testDriver {
	t.Helper()
	logs := &syncBuffer{}
	l := logrus.New()
	l.SetOutput(logs)
	l.SetLevel(logrus.DebugLevel)
	k := newFakeKernel()
	m := &fakeMounter{k: k}
	fs := newFakeStore(buckets...)
	dir := filepath.Join(t.TempDir(), "state")
	d, err := New(Config{
		Version: "test", Controller: true, Node: true, NodeID: "node-1", StateDir: dir,
		Mounter: m, NewStore: fs.newStore, Log: l, MountTimeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	d.checker = k.checker()
	d.serveWait = 200 * time.Millisecond
	return &testDriver{Driver: d, store: fs, kernel: k, mounter: m, logs: logs, dir: dir}
}
