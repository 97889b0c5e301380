package store

import (
	"bytes"
	"context"
	"io"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jonboulle/clockwork"
)

// Fake is an in-memory Store for unit tests. It follows S3's listing rules
// (sorted keys, delimiter, common prefixes, pages of MaxKeys), ranged reads
// and If-Match, S3's rules for writes and multipart uploads (fake_write.go),
// and counts requests by operation. Unlike some S3 backends it lets an
// object "a" and an object "a/b" coexist, so tests can cover clashes.
//
// Tests set its content with Seed and SeedObject, which make no request;
// the Store calls are what the code under test uses.
type Fake struct {
	// Constant data
	pageSize int32 // set before the fake is shared (SetPageSize)

	// Mutable state
	mu      sync.Mutex                         // protects the following
	buckets map[string]map[string]*fakeObject  // GUARDED_BY(mu); bucket -> key -> object
	uploads map[string]*fakeUpload             // GUARDED_BY(mu); open multipart uploads by id
	nextID  int                                // GUARDED_BY(mu); numbers upload ids
	noCond  bool                               // GUARDED_BY(mu); SetNoConditionalWrites
	latency time.Duration                      // GUARDED_BY(mu)
	clock   clockwork.Clock                    // GUARDED_BY(mu); times latency, dates writes
	failFn  func(op, bucket, key string) error // GUARDED_BY(mu); called without mu held

	calls     sync.Map     // op -> *atomic.Int64; lock-free, outside mu
	putBytes  atomic.Int64 // body bytes received by Put; outside mu
	partBytes atomic.Int64 // body bytes received by UploadPart; outside mu
}

// fakeObject is one stored object. Its fields are read and changed under
// its Fake's mu; data and meta are never changed in place (a write or a
// seed replaces the whole object), so a GET body, a copy and a returned
// Object share them without the lock.
type fakeObject struct {
	data     []byte
	etag     string
	modified time.Time
	class    string
	meta     map[string]string
	restore  RestoreState
	// unnamed marks a name the listing cannot decode (PutUnnamed).
	unnamed bool
}

// info describes the object stored under key as HEAD and GET do: Size is
// the whole object's, whatever range a GET asked for.
func (o *fakeObject) info(key string) Object {
	return Object{
		Key:          key,
		Size:         int64(len(o.data)),
		ETag:         o.etag,
		LastModified: o.modified,
		StorageClass: o.class,
		Restore:      o.restore,
		Metadata:     o.meta,
	}
}

var _ Store = (*Fake)(nil)

// NewFake returns an empty fake store.
func NewFake() *Fake {
	return &Fake{
		buckets:  map[string]map[string]*fakeObject{},
		uploads:  map[string]*fakeUpload{},
		pageSize: 1000,
		clock:    clockwork.NewRealClock(),
	}
}

// SetPageSize changes the maximum page size of listings (default 1000).
// REQUIRES: no request runs yet; the size is not guarded by the lock.
func (f *Fake) SetPageSize(n int32) { f.pageSize = n }

// SetClock makes latency wait on clock (a fake clock lets a test decide
// when requests answer) and dates written objects by it.
func (f *Fake) SetClock(clock clockwork.Clock) {
	f.mu.Lock()
	f.clock = clock
	f.mu.Unlock()
}

// SetLatency delays every request by d (the context still cancels it).
func (f *Fake) SetLatency(d time.Duration) {
	f.mu.Lock()
	f.latency = d
	f.mu.Unlock()
}

// SetFailure installs fn, called before each request; a non-nil result is
// returned as the request's error.
func (f *Fake) SetFailure(fn func(op, bucket, key string) error) {
	f.mu.Lock()
	f.failFn = fn
	f.mu.Unlock()
}

// CreateBucket adds an empty bucket.
func (f *Fake) CreateBucket(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.buckets[name] == nil {
		f.buckets[name] = map[string]*fakeObject{}
	}
}

// Seed stores data under key, creating the bucket if needed, without a
// request: it sets up a test, and is neither counted nor delayed.
func (f *Fake) Seed(bucket, key string, data []byte) {
	f.SeedObject(bucket, key, data, "", nil)
}

// SeedObject seeds data with a storage class and user metadata.
func (f *Fake) SeedObject(bucket, key string, data []byte, class string, meta map[string]string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.buckets[bucket] == nil {
		f.buckets[bucket] = map[string]*fakeObject{}
	}
	f.buckets[bucket][key] = &fakeObject{
		data:     bytes.Clone(data),
		etag:     md5ETag(data),
		modified: time.Now().UTC().Truncate(time.Second),
		class:    class,
		meta:     meta,
	}
}

// PutUnnamed adds an entry whose name a real listing could not decode, as
// the server sent it (say "dir/bad%zz"). List reports it in
// ListPage.Skipped, in key order and counting towards the page size, when
// it lies under the prefix with no delimiter after it; it is never an
// object, and HEAD, GET and restore do not find it. The fake never encodes
// names, so this is the only way its pages have Skipped entries.
func (f *Fake) PutUnnamed(bucket, raw string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.buckets[bucket] == nil {
		f.buckets[bucket] = map[string]*fakeObject{}
	}
	f.buckets[bucket][raw] = &fakeObject{unnamed: true}
}

// object returns the object named key. REQUIRES: f.mu held.
func (f *Fake) object(bucket, key string) (*fakeObject, bool) {
	o, ok := f.buckets[bucket][key]
	if !ok || o.unnamed {
		return nil, false
	}
	return o, true
}

// Archive moves an object to an archived class, as a lifecycle rule does,
// dropping any restored copy.
func (f *Fake) Archive(bucket, key, class string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if o, ok := f.object(bucket, key); ok {
		o.class, o.restore = class, RestoreState{}
	}
}

// FinishRestore completes a running restore with the given expiry (a past
// expiry means the restored copy is gone again).
func (f *Fake) FinishRestore(bucket, key string, expiry time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if o, ok := f.object(bucket, key); ok {
		o.restore = RestoreState{Requested: true, Expiry: expiry}
	}
}

// Remove removes an object without a request, as another client would.
func (f *Fake) Remove(bucket, key string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.buckets[bucket], key)
}

// Calls returns how many requests of op were made, failed ones included.
// The ops are S3's names: "ListBuckets", "ListObjectsV2", "HeadObject",
// "GetObject", "RestoreObject", "PutObject", "CreateMultipartUpload",
// "UploadPart", "UploadPartCopy", "CompleteMultipartUpload",
// "AbortMultipartUpload", "CopyObject", "DeleteObject".
func (f *Fake) Calls(op string) int64 {
	if v, ok := f.calls.Load(op); ok {
		return v.(*atomic.Int64).Load()
	}
	return 0
}

// begin counts the call, applies latency and the failure hook.
func (f *Fake) begin(ctx context.Context, op, bucket, key string) error {
	v, _ := f.calls.LoadOrStore(op, new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
	f.mu.Lock()
	lat, fail, clock := f.latency, f.failFn, f.clock
	f.mu.Unlock()
	if lat > 0 {
		t := clock.NewTimer(lat)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return fakeCtxErr(ctx, op, bucket, key)
		case <-t.Chan():
		}
	}
	if err := ctx.Err(); err != nil {
		return fakeCtxErr(ctx, op, bucket, key)
	}
	if fail != nil {
		if err := fail(op, bucket, key); err != nil {
			return err
		}
	}
	return nil
}

func fakeCtxErr(ctx context.Context, op, bucket, key string) error {
	return &Error{Op: op, Bucket: bucket, Key: key, Kind: ErrOther, Err: ctx.Err()}
}

func fakeErr(op, bucket, key string, status int, code string, kind error) error {
	return &Error{Op: op, Bucket: bucket, Key: key, Status: status, Code: code, Kind: kind}
}

// ListBuckets implements Store.
func (f *Fake) ListBuckets(ctx context.Context) ([]Bucket, error) {
	if err := f.begin(ctx, "ListBuckets", "", ""); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Bucket
	for name := range f.buckets {
		out = append(out, Bucket{Name: name})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// List implements Store.
func (f *Fake) List(ctx context.Context, in ListInput) (*ListPage, error) {
	if err := f.begin(ctx, "ListObjectsV2", in.Bucket, in.Prefix); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	objs, ok := f.buckets[in.Bucket]
	if !ok {
		return nil, fakeErr("ListObjectsV2", in.Bucket, "", 404, "NoSuchBucket", ErrNotFound)
	}
	max := f.pageSize
	if in.MaxKeys > 0 && in.MaxKeys < max {
		max = in.MaxKeys
	}
	keys := make([]string, 0, len(objs))
	for k := range objs {
		if strings.HasPrefix(k, in.Prefix) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	page := &ListPage{}
	var n int32
	last := ""
	for _, k := range keys {
		// The token is the last key or prefix returned: resume after it.
		if in.Token != "" && k <= in.Token {
			continue
		}
		o := objs[k]
		entry := k
		isPrefix := false
		if o.unnamed && in.Delimiter != "" && strings.Contains(k[len(in.Prefix):], in.Delimiter) {
			continue
		}
		if in.Delimiter != "" && !o.unnamed {
			rest := k[len(in.Prefix):]
			if i := strings.Index(rest, in.Delimiter); i >= 0 {
				entry = in.Prefix + rest[:i+len(in.Delimiter)]
				isPrefix = true
			}
		}
		if isPrefix && entry == last {
			continue
		}
		if isPrefix && in.Token != "" && strings.HasPrefix(in.Token, entry) {
			continue
		}
		if n == max {
			page.NextToken = last
			return page, nil
		}
		n++
		switch {
		case isPrefix:
			page.Prefixes = append(page.Prefixes, entry)
			// Resume after every key under this prefix.
			last = entry
		case o.unnamed:
			page.Skipped = append(page.Skipped, k)
			last = k
		default:
			obj := o.info(k)
			obj.Metadata = nil // a listing carries no user metadata
			page.Objects = append(page.Objects, obj)
			last = k
		}
	}
	return page, nil
}

// Head implements Store.
func (f *Fake) Head(ctx context.Context, bucket, key string) (*Object, error) {
	if err := f.begin(ctx, "HeadObject", bucket, key); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	o, ok := f.object(bucket, key)
	if !ok {
		return nil, fakeErr("HeadObject", bucket, key, 404, "NotFound", ErrNotFound)
	}
	obj := o.info(key)
	return &obj, nil
}

// Get implements Store.
func (f *Fake) Get(ctx context.Context, in GetInput) (*GetOutput, error) {
	if err := f.begin(ctx, "GetObject", in.Bucket, in.Key); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	o, ok := f.object(in.Bucket, in.Key)
	if !ok {
		return nil, fakeErr("GetObject", in.Bucket, in.Key, 404, "NoSuchKey", ErrNotFound)
	}
	if Archived(o.class) && !o.restore.Readable(time.Now()) {
		return nil, fakeErr("GetObject", in.Bucket, in.Key, 403, "InvalidObjectState", ErrInvalidObjectState)
	}
	if in.IfMatch != "" && in.IfMatch != o.etag {
		return nil, fakeErr("GetObject", in.Bucket, in.Key, 412, "PreconditionFailed", ErrPreconditionFailed)
	}
	size := int64(len(o.data))
	if in.Length == 0 || in.Offset > size || (in.Offset == size && (in.Offset > 0 || in.Length >= 0)) {
		return nil, fakeErr("GetObject", in.Bucket, in.Key, 416, "InvalidRange", ErrInvalidRange)
	}
	end := size
	if in.Length >= 0 && in.Offset+in.Length < size {
		end = in.Offset + in.Length
	}
	return &GetOutput{
		Body:   io.NopCloser(bytes.NewReader(o.data[in.Offset:end])),
		Object: o.info(in.Key),
	}, nil
}

// Restore implements Store with S3's answers: a new restore starts and
// stays ongoing until FinishRestore; a done one is extended.
func (f *Fake) Restore(ctx context.Context, in RestoreInput) (RestoreOutcome, error) {
	if err := f.begin(ctx, "RestoreObject", in.Bucket, in.Key); err != nil {
		return 0, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	o, ok := f.object(in.Bucket, in.Key)
	switch {
	case !ok:
		return 0, fakeErr("RestoreObject", in.Bucket, in.Key, 404, "NoSuchKey", ErrNotFound)
	case !Archived(o.class):
		return 0, fakeErr("RestoreObject", in.Bucket, in.Key, 403, "InvalidObjectState", ErrInvalidObjectState)
	case o.restore.Ongoing:
		return 0, fakeErr("RestoreObject", in.Bucket, in.Key, 409, "RestoreAlreadyInProgress", ErrRestoreInProgress)
	case o.restore.Readable(time.Now()):
		o.restore.Expiry = time.Now().Add(time.Duration(in.Days) * 24 * time.Hour)
		return RestoreAlreadyDone, nil
	}
	o.restore = RestoreState{Requested: true, Ongoing: true}
	return RestoreStarted, nil
}
