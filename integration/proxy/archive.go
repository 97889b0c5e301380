package proxy

// Archive-tier emulation. versitygw's posix backend stores every object as
// STANDARD and has no RestoreObject, so the proxy plays the part of an
// object store with GLACIER / DEEP_ARCHIVE objects (AWS S3, Tigris):
//
//   - it records the x-amz-storage-class of PutObject, CopyObject and
//     CreateMultipartUpload (applied at CompleteMultipartUpload), and tests
//     can move an object to a class afterwards (Archive), as a lifecycle
//     rule would;
//   - HEAD and GET of a tracked object carry x-amz-storage-class and, once a
//     restore was asked for, x-amz-restore;
//   - GET (and CopyObject / UploadPartCopy from) an archived object that is
//     not restored fails with 403 InvalidObjectState, without reaching the
//     server;
//   - RestoreObject is answered by the proxy (202, 409
//     RestoreAlreadyInProgress, 200, 403 InvalidObjectState, 400
//     MalformedXML); a restore completes by itself after the restore delay
//     (default one hour, so tests usually call FinishRestore) and expires
//     Days*24h after it completed;
//   - ListObjectsV2 shows the tracked classes and, when asked for with
//     x-amz-optional-object-attributes: RestoreStatus, the restore status;
//   - InjectListing adds keys to ListObjectsV2 responses that the posix
//     backend cannot store.
//
// A class is recorded only once the server answered the write with 2xx, so
// a write the proxy refused or failed (RefuseWrites, Faults) changes
// nothing. A write with STANDARD or no class makes the key an ordinary
// object again; any other class (STANDARD_IA, GLACIER_IR, ...) is recorded
// and shown by HEAD, GET and listings, and GLACIER and DEEP_ARCHIVE
// archive the key.
//
// Requests are forwarded unchanged (they are signed); only responses are
// rewritten. That holds for x-amz-storage-class too: clients sign it, and
// versitygw's posix backend (v1.8.0) neither checks nor keeps it (any value
// is accepted, every object is STANDARD), so there is nothing to strip.
// versitygw refuses a CopyObject onto its own source unless it carries
// x-amz-metadata-directive: REPLACE, where AWS S3 also accepts a change of
// storage class. Everything is keyed by bucket and key of path-style URLs.
//
// This file holds the archive type and the methods tests drive it with.
// The rest is in archive_state.go (what is known of each object and how a
// restore runs its course), archive_handler.go (the requests the proxy
// answers itself and the responses it learns from), archive_list.go
// (ListObjectsV2 rewriting) and archive_xml.go (XML text helpers).

import (
	"sync"
	"time"
)

// DefaultRestoreDelay is how long a restore takes by itself unless
// SetRestoreDelay says otherwise.
const DefaultRestoreDelay = time.Hour

// archive is the proxy's archive-tier state. The zero value is ready to use.
type archive struct {
	// Mutable state
	mu       sync.Mutex
	objects  map[string]map[string]*objState // bucket → key → state. GUARDED_BY(mu)
	uploads  map[string]pendingUpload        // multipart upload id → class to apply. GUARDED_BY(mu)
	injected map[string][]string             // bucket → keys added to listings. GUARDED_BY(mu)
	pages    map[string]string               // NextContinuationToken → last name of its page. GUARDED_BY(mu)
	delay    time.Duration                   // GUARDED_BY(mu)
	delaySet bool                            // GUARDED_BY(mu)
	restores int64                           // GUARDED_BY(mu)
}

// pendingUpload is a multipart upload created through the proxy: the class
// its key gets when the upload completes.
type pendingUpload struct{ bucket, key, class string }

// Archive sets the storage class of bucket/key, as a lifecycle transition
// would after the upload, and drops any restore state. "STANDARD" or ""
// makes the object an ordinary one again.
func (p *Proxy) Archive(bucket, key, class string) {
	p.arch.mu.Lock()
	defer p.arch.mu.Unlock()
	p.arch.setClass(bucket, key, class)
}

// StorageClass returns the class the proxy tracks for bucket/key ("" for an
// untracked, that is STANDARD, object).
func (p *Proxy) StorageClass(bucket, key string) string {
	p.arch.mu.Lock()
	defer p.arch.mu.Unlock()
	if o := p.arch.lookup(bucket, key, time.Now()); o != nil {
		return o.class
	}
	return ""
}

// FinishRestore makes the restore of bucket/key complete now, readable until
// expiry. It works on any tracked object, even one with no restore running;
// it does nothing for an untracked one.
func (p *Proxy) FinishRestore(bucket, key string, expiry time.Time) {
	p.arch.mu.Lock()
	defer p.arch.mu.Unlock()
	if o := p.arch.objects[bucket][key]; o != nil {
		o.ongoing, o.restored, o.expiry = false, true, expiry
	}
}

// ExpireRestore drops the restore state of bucket/key: an archived object
// is unreadable again and shows no x-amz-restore.
func (p *Proxy) ExpireRestore(bucket, key string) {
	p.arch.mu.Lock()
	defer p.arch.mu.Unlock()
	if o := p.arch.objects[bucket][key]; o != nil {
		o.ongoing, o.restored, o.expiry = false, false, time.Time{}
	}
}

// SetRestoreDelay sets how long after RestoreObject a restore completes by
// itself (DefaultRestoreDelay until set). It applies to running restores.
func (p *Proxy) SetRestoreDelay(d time.Duration) {
	p.arch.mu.Lock()
	defer p.arch.mu.Unlock()
	p.arch.delay, p.arch.delaySet = d, true
}

// RestoreRequests returns how many RestoreObject requests the proxy got.
func (p *Proxy) RestoreRequests() int64 {
	p.arch.mu.Lock()
	defer p.arch.mu.Unlock()
	return p.arch.restores
}

// InjectListing makes ListObjectsV2 responses for bucket show keys as well
// (replacing keys injected before; nil removes them): empty STANDARD
// objects, or common prefixes when the request's delimiter rolls them up.
// They match the request's prefix and start-after, are merged in key order,
// not duplicated, and paged along with the real keys (a key lands on the
// page whose key range holds it; MaxKeys is not enforced). Only the listing
// changes: HEAD or GET of an injected key goes to the server.
func (p *Proxy) InjectListing(bucket string, keys []string) {
	p.arch.mu.Lock()
	defer p.arch.mu.Unlock()
	if len(keys) == 0 {
		delete(p.arch.injected, bucket)
		return
	}
	if p.arch.injected == nil {
		p.arch.injected = map[string][]string{}
	}
	p.arch.injected[bucket] = append([]string(nil), keys...)
}

func (a *archive) resetCounters() {
	a.mu.Lock()
	a.restores = 0
	a.mu.Unlock()
}
