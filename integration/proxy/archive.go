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
// Requests are forwarded unchanged (they are signed); only responses are
// rewritten. Everything is keyed by bucket and key of path-style URLs.

import (
	"bytes"
	"crypto/rand"
	"encoding/xml"
	"html"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DefaultRestoreDelay is how long a restore takes by itself unless
// SetRestoreDelay says otherwise.
const DefaultRestoreDelay = time.Hour

// emptyETag is the ETag of an empty object, used for injected keys.
const emptyETag = `"d41d8cd98f00b204e9800998ecf8427e"`

// objState is what the proxy knows about one object.
type objState struct {
	class    string
	ongoing  bool      // a restore is running
	start    time.Time // when the running restore was asked for
	days     int       // Days of the running restore
	restored bool      // a restored copy is readable until expiry
	expiry   time.Time
}

type pendingUpload struct{ bucket, key, class string }

// archive is the proxy's archive-tier state. The zero value is ready to use.
type archive struct {
	mu       sync.Mutex
	objects  map[string]map[string]*objState // bucket → key → state
	uploads  map[string]pendingUpload        // multipart upload id → class to apply
	injected map[string][]string             // bucket → keys added to listings
	pages    map[string]string               // NextContinuationToken → last name of its page
	delay    time.Duration
	delaySet bool
	restores int64
}

// IsArchivedClass says whether objects of class must be restored before
// they can be read.
func IsArchivedClass(class string) bool {
	return class == "GLACIER" || class == "DEEP_ARCHIVE"
}

func (a *archive) restoreDelay() time.Duration {
	if !a.delaySet {
		return DefaultRestoreDelay
	}
	return a.delay
}

// lookup returns the settled state of bucket/key, or nil. a.mu is held.
func (a *archive) lookup(bucket, key string, now time.Time) *objState {
	o := a.objects[bucket][key]
	if o != nil {
		o.settle(now, a.restoreDelay())
	}
	return o
}

// setClass records class for bucket/key and drops any restore state.
// STANDARD (or no class) forgets the object. a.mu is held.
func (a *archive) setClass(bucket, key, class string) {
	if class == "" || class == "STANDARD" {
		a.forget(bucket, key)
		return
	}
	if a.objects == nil {
		a.objects = map[string]map[string]*objState{}
	}
	if a.objects[bucket] == nil {
		a.objects[bucket] = map[string]*objState{}
	}
	a.objects[bucket][key] = &objState{class: class}
}

// forget drops bucket/key. a.mu is held.
func (a *archive) forget(bucket, key string) {
	if m := a.objects[bucket]; m != nil {
		delete(m, key)
		if len(m) == 0 {
			delete(a.objects, bucket)
		}
	}
}

// settle completes a restore whose delay has passed and expires a restored
// copy whose expiry has passed.
func (o *objState) settle(now time.Time, delay time.Duration) {
	if o.ongoing && now.Sub(o.start) >= delay {
		done := o.start.Add(delay)
		o.ongoing, o.restored = false, true
		o.expiry = done.Add(time.Duration(o.days) * 24 * time.Hour)
	}
	if o.restored && !now.Before(o.expiry) {
		o.restored, o.expiry = false, time.Time{}
	}
}

func (o *objState) readable() bool { return !IsArchivedClass(o.class) || o.restored }

// restoreHeader is the x-amz-restore value, "" when no restore is known.
func (o *objState) restoreHeader() string {
	switch {
	case o.ongoing:
		return `ongoing-request="true"`
	case o.restored:
		return `ongoing-request="false", expiry-date="` + o.expiry.UTC().Format(http.TimeFormat) + `"`
	}
	return ""
}

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

// splitPath splits a path-style URL path into bucket and key.
func splitPath(path string) (bucket, key string) {
	bucket, key, _ = strings.Cut(strings.TrimPrefix(path, "/"), "/")
	return bucket, key
}

// objectSubresources are query parameters that make a request on an object
// something other than Get/Put/Head/DeleteObject.
var objectSubresources = []string{"acl", "tagging", "retention", "legal-hold", "attributes",
	"torrent", "uploadId", "uploads", "restore", "select", "renameObject"}

func plainObjectRequest(q url.Values) bool {
	for _, s := range objectSubresources {
		if q.Has(s) {
			return false
		}
	}
	return true
}

// serveArchive answers the requests the proxy handles itself: RestoreObject,
// and reads of archived objects that are not restored. It reports whether
// it answered.
func (p *Proxy) serveArchive(w http.ResponseWriter, r *http.Request) bool {
	bucket, key := splitPath(r.URL.Path)
	if bucket == "" || key == "" {
		return false
	}
	q := r.URL.Query()
	switch {
	case r.Method == http.MethodPost && q.Has("restore"):
		p.serveRestore(w, r, bucket, key)
		return true
	case r.Method == http.MethodGet && plainObjectRequest(q):
		if class, blocked := p.arch.blocked(bucket, key); blocked {
			writeS3Error(w, http.StatusForbidden, "InvalidObjectState",
				"The action is not valid for the object's storage class", class)
			return true
		}
	case r.Method == http.MethodPut && r.Header.Get("X-Amz-Copy-Source") != "":
		sb, sk, ok := parseCopySource(r.Header.Get("X-Amz-Copy-Source"))
		if !ok {
			return false
		}
		if class, blocked := p.arch.blocked(sb, sk); blocked {
			writeS3Error(w, http.StatusForbidden, "InvalidObjectState",
				"The source object of the COPY action is not in the active tier and is only stored in Amazon S3 Glacier.", class)
			return true
		}
	}
	return false
}

// blocked says whether bucket/key is archived and not restored, and its class.
func (a *archive) blocked(bucket, key string) (string, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	o := a.lookup(bucket, key, time.Now())
	if o == nil || o.readable() {
		return "", false
	}
	return o.class, true
}

// parseCopySource parses x-amz-copy-source: [/]bucket/key[?versionId=…],
// URL-encoded.
func parseCopySource(s string) (bucket, key string, ok bool) {
	s, _, _ = strings.Cut(s, "?")
	s, err := url.PathUnescape(s)
	if err != nil {
		return "", "", false
	}
	bucket, key = splitPath("/" + strings.TrimPrefix(s, "/"))
	return bucket, key, bucket != "" && key != ""
}

type restoreRequest struct {
	XMLName xml.Name `xml:"RestoreRequest"`
	Days    *int     `xml:"Days"`
	Tier    string   `xml:"GlacierJobParameters>Tier"`
}

// serveRestore answers RestoreObject.
func (p *Proxy) serveRestore(w http.ResponseWriter, r *http.Request, bucket, key string) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	a := &p.arch
	a.mu.Lock()
	a.restores++
	a.mu.Unlock()
	if err != nil {
		writeS3Error(w, http.StatusBadRequest, "IncompleteBody", "The request body could not be read.", "")
		return
	}
	var req restoreRequest
	if xml.Unmarshal(body, &req) != nil || req.Days == nil || *req.Days < 1 ||
		!(req.Tier == "" || req.Tier == "Standard" || req.Tier == "Bulk" || req.Tier == "Expedited") {
		writeS3Error(w, http.StatusBadRequest, "MalformedXML",
			"The XML you provided was not well-formed or did not validate against our published schema.", "")
		return
	}
	now := time.Now()
	a.mu.Lock()
	o := a.lookup(bucket, key, now)
	status := 0
	switch {
	case o == nil || !IsArchivedClass(o.class):
	case o.ongoing:
		status = http.StatusConflict
	case o.restored:
		o.expiry = now.Add(time.Duration(*req.Days) * 24 * time.Hour)
		status = http.StatusOK
	default:
		o.ongoing, o.start, o.days = true, now, *req.Days
		o.settle(now, a.restoreDelay()) // a zero delay completes at once
		status = http.StatusAccepted
	}
	a.mu.Unlock()
	switch status {
	case 0:
		writeS3Error(w, http.StatusForbidden, "InvalidObjectState",
			"Restore is not allowed for the object's current storage class", "")
	case http.StatusConflict:
		writeS3Error(w, status, "RestoreAlreadyInProgress", "Object restore is already in progress", "")
	default:
		w.Header().Set("X-Amz-Request-Id", requestID())
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(status)
	}
}

// writeS3Error writes an S3 error response; class, if set, goes in a
// StorageClass element.
func writeS3Error(w http.ResponseWriter, status int, code, msg, class string) {
	id := requestID()
	var b strings.Builder
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>`)
	b.WriteString(textEscaper.Replace(code))
	b.WriteString("</Code><Message>")
	b.WriteString(textEscaper.Replace(msg))
	b.WriteString("</Message>")
	if class != "" {
		b.WriteString("<StorageClass>" + xmlEscape(class) + "</StorageClass>")
	}
	b.WriteString("<RequestId>" + id + "</RequestId></Error>")
	h := w.Header()
	h.Set("Content-Type", "application/xml")
	h.Set("Content-Length", strconv.Itoa(b.Len()))
	h.Set("X-Amz-Request-Id", id)
	w.WriteHeader(status)
	io.WriteString(w, b.String())
}

func requestID() string {
	const digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	var b [16]byte
	rand.Read(b[:])
	for i := range b {
		b[i] = digits[int(b[i])%len(digits)]
	}
	return string(b[:])
}

// modifyResponse updates the archive state from successful responses and
// rewrites the responses of tracked objects and listings. Object bodies are
// never touched, so GETs still stream.
func (p *Proxy) modifyResponse(resp *http.Response) error {
	r := resp.Request
	if r == nil || r.URL == nil {
		return nil
	}
	bucket, key := splitPath(r.URL.Path)
	if bucket == "" {
		return nil
	}
	q := r.URL.Query()
	ok := resp.StatusCode/100 == 2
	a := &p.arch
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		if key == "" {
			if ok && r.Method == http.MethodGet && q.Get("list-type") == "2" {
				return p.rewriteListing(resp, bucket, q, r.Header)
			}
			return nil
		}
		if ok && plainObjectRequest(q) {
			a.mu.Lock()
			o := a.lookup(bucket, key, time.Now())
			var class, restore string
			if o != nil {
				class, restore = o.class, o.restoreHeader()
			}
			a.mu.Unlock()
			if o == nil {
				return nil
			}
			resp.Header.Set("X-Amz-Storage-Class", class)
			if restore != "" {
				resp.Header.Set("X-Amz-Restore", restore)
			} else {
				resp.Header.Del("X-Amz-Restore")
			}
		}
	case http.MethodPut:
		// PutObject and CopyObject (not UploadPart / UploadPartCopy).
		if ok && key != "" && plainObjectRequest(q) && !q.Has("partNumber") {
			a.mu.Lock()
			a.setClass(bucket, key, r.Header.Get("X-Amz-Storage-Class"))
			a.mu.Unlock()
		}
	case http.MethodPost:
		switch {
		case !ok || key == "":
		case q.Has("uploads"):
			body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			resp.Body.Close()
			resp.Body = io.NopCloser(bytes.NewReader(body))
			if err != nil {
				return err
			}
			var res struct {
				UploadID string `xml:"UploadId"`
			}
			if xml.Unmarshal(body, &res) == nil && res.UploadID != "" {
				a.mu.Lock()
				if a.uploads == nil {
					a.uploads = map[string]pendingUpload{}
				}
				a.uploads[res.UploadID] = pendingUpload{bucket, key, r.Header.Get("X-Amz-Storage-Class")}
				a.mu.Unlock()
			}
		case q.Has("uploadId"):
			// CompleteMultipartUpload. An upload created around the proxy
			// leaves what is known of the key as it was.
			a.mu.Lock()
			if u, found := a.uploads[q.Get("uploadId")]; found {
				delete(a.uploads, q.Get("uploadId"))
				a.setClass(u.bucket, u.key, u.class)
			}
			a.mu.Unlock()
		}
	case http.MethodDelete:
		if ok && key != "" {
			a.mu.Lock()
			if q.Has("uploadId") {
				delete(a.uploads, q.Get("uploadId"))
			} else if plainObjectRequest(q) {
				a.forget(bucket, key)
			}
			a.mu.Unlock()
		}
	}
	return nil
}

// listEntry is a <Contents> or <CommonPrefixes> element of a listing.
type listEntry struct {
	name     string // decoded key or prefix
	raw      string // the element, rewritten
	isPrefix bool
}

var keyCountRE = regexp.MustCompile(`<KeyCount>\d*</KeyCount>`)

// rewriteListing rewrites a ListObjectsV2 response body of bucket: storage
// classes and restore status of tracked objects, and injected keys.
func (p *Proxy) rewriteListing(resp *http.Response, bucket string, q url.Values, reqHeader http.Header) error {
	a := &p.arch
	a.mu.Lock()
	active := len(a.objects[bucket]) > 0 || len(a.injected[bucket]) > 0
	a.mu.Unlock()
	if !active {
		return nil
	}
	if ce := resp.Header.Get("Content-Encoding"); ce != "" && ce != "identity" {
		return nil
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		resp.Body = io.NopCloser(bytes.NewReader(body))
		return err
	}
	wantRestore := false
	for _, v := range reqHeader.Values("X-Amz-Optional-Object-Attributes") {
		for _, f := range strings.Split(v, ",") {
			wantRestore = wantRestore || strings.EqualFold(strings.TrimSpace(f), "RestoreStatus")
		}
	}
	if out, changed := a.rewriteListingBody(string(body), bucket, q, wantRestore); changed {
		body = []byte(out)
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
	return nil
}

func (a *archive) rewriteListingBody(body, bucket string, q url.Values, wantRestore bool) (string, bool) {
	end := strings.LastIndex(body, "</ListBucketResult>")
	if end < 0 {
		return body, false
	}
	urlEncoded := elementText(body, "EncodingType") == "url"
	decode := func(s string) string {
		s = xmlUnescape(s)
		if urlEncoded {
			if d, err := url.QueryUnescape(s); err == nil {
				s = d
			}
		}
		return s
	}
	encode := func(s string) string {
		if urlEncoded {
			s = url.QueryEscape(s)
		}
		return xmlEscape(s)
	}

	// Cut the entries out of the body, keeping the rest.
	var rest strings.Builder
	var entries []listEntry
	insertAt := -1
	for i := 0; ; {
		c := indexFrom(body, "<Contents>", i)
		cp := indexFrom(body, "<CommonPrefixes>", i)
		start, closing, isPrefix := c, "</Contents>", false
		if start < 0 || (cp >= 0 && cp < start) {
			start, closing, isPrefix = cp, "</CommonPrefixes>", true
		}
		if start < 0 || start > end {
			rest.WriteString(body[i:])
			break
		}
		stop := indexFrom(body, closing, start)
		if stop < 0 {
			return body, false
		}
		stop += len(closing)
		rest.WriteString(body[i:start])
		if insertAt < 0 {
			insertAt = rest.Len()
		}
		raw := body[start:stop]
		name := elementText(raw, "Key")
		if isPrefix {
			name = elementText(raw, "Prefix")
		}
		entries = append(entries, listEntry{name: decode(name), raw: raw, isPrefix: isPrefix})
		i = stop
	}
	out := rest.String()
	if insertAt < 0 {
		insertAt = strings.LastIndex(out, "</ListBucketResult>")
	}

	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()

	// Tracked objects: storage class and restore status.
	for i := range entries {
		e := &entries[i]
		if e.isPrefix {
			continue
		}
		o := a.lookup(bucket, e.name, now)
		if o == nil {
			continue
		}
		e.raw = setElement(e.raw, "StorageClass", xmlEscape(o.class))
		if wantRestore && (o.ongoing || o.restored) {
			rs := "<IsRestoreInProgress>" + strconv.FormatBool(o.ongoing) + "</IsRestoreInProgress>"
			if o.restored {
				rs += "<RestoreExpiryDate>" + o.expiry.UTC().Format(time.RFC3339) + "</RestoreExpiryDate>"
			}
			e.raw = setElement(e.raw, "RestoreStatus", rs)
		}
	}

	// Injected keys.
	injected := a.injectedEntries(bucket, q, body, entries, encode)
	if len(injected) > 0 {
		entries = append(entries, injected...)
		sort.SliceStable(entries, func(i, j int) bool {
			if entries[i].isPrefix != entries[j].isPrefix {
				return !entries[i].isPrefix
			}
			return entries[i].name < entries[j].name
		})
		out = keyCountRE.ReplaceAllLiteralString(out, "<KeyCount>"+strconv.Itoa(len(entries))+"</KeyCount>")
	}
	if len(a.injected[bucket]) > 0 && elementText(body, "IsTruncated") == "true" {
		if tok := xmlUnescape(elementText(body, "NextContinuationToken")); tok != "" {
			if a.pages == nil || len(a.pages) > 100000 {
				a.pages = map[string]string{}
			}
			a.pages[tok] = maxName(entries)
		}
	}

	var b strings.Builder
	b.Grow(len(body) + 256*len(injected))
	b.WriteString(out[:insertAt])
	for _, e := range entries {
		b.WriteString(e.raw)
	}
	b.WriteString(out[insertAt:])
	return b.String(), true
}

// injectedEntries returns the injected keys of bucket that belong on this
// page and are not on it already. a.mu is held.
func (a *archive) injectedEntries(bucket string, q url.Values, body string, page []listEntry, encode func(string) string) []listEntry {
	keys := a.injected[bucket]
	if len(keys) == 0 {
		return nil
	}
	// The page covers names in (lower, upper]; upper is open on the last page.
	lower := q.Get("start-after")
	if tok := q.Get("continuation-token"); tok != "" {
		l, known := a.pages[tok]
		if !known {
			return nil
		}
		lower = max(lower, l)
	}
	upper, bounded := "", elementText(body, "IsTruncated") == "true"
	if bounded {
		if len(page) == 0 {
			return nil
		}
		upper = maxName(page)
	}
	seen := map[listEntry]bool{}
	for _, e := range page {
		seen[listEntry{name: e.name, isPrefix: e.isPrefix}] = true
	}
	prefix, delim := q.Get("prefix"), q.Get("delimiter")
	lastModified := time.Now().UTC().Format("2006-01-02T15:04:05.000Z")
	var out []listEntry
	for _, k := range keys {
		if !strings.HasPrefix(k, prefix) {
			continue
		}
		e := listEntry{name: k}
		if delim != "" {
			if i := strings.Index(k[len(prefix):], delim); i >= 0 {
				e = listEntry{name: k[:len(prefix)+i+len(delim)], isPrefix: true}
			}
		}
		if e.name <= lower || (bounded && e.name > upper) || seen[e] {
			continue
		}
		seen[e] = true
		if e.isPrefix {
			e.raw = "<CommonPrefixes><Prefix>" + encode(e.name) + "</Prefix></CommonPrefixes>"
		} else {
			e.raw = "<Contents><Key>" + encode(e.name) + "</Key><LastModified>" + lastModified +
				"</LastModified><ETag>" + xmlEscape(emptyETag) + "</ETag><Size>0</Size><StorageClass>STANDARD</StorageClass></Contents>"
		}
		out = append(out, e)
	}
	return out
}

func maxName(entries []listEntry) string {
	m := ""
	for _, e := range entries {
		m = max(m, e.name)
	}
	return m
}

func indexFrom(s, sub string, from int) int {
	if from > len(s) {
		return -1
	}
	i := strings.Index(s[from:], sub)
	if i < 0 {
		return -1
	}
	return from + i
}

// elementText returns the raw text of the first <name>…</name> in s.
func elementText(s, name string) string {
	open, closing := "<"+name+">", "</"+name+">"
	i := strings.Index(s, open)
	if i < 0 {
		return ""
	}
	i += len(open)
	j := strings.Index(s[i:], closing)
	if j < 0 {
		return ""
	}
	return s[i : i+j]
}

// setElement sets the content of <name> in the element block (whose last
// tag is its closing tag), adding the element at its end when missing.
func setElement(block, name, content string) string {
	open, closing := "<"+name+">", "</"+name+">"
	if i := strings.Index(block, open); i >= 0 {
		if j := strings.Index(block[i:], closing); j >= 0 {
			return block[:i+len(open)] + content + block[i+j:]
		}
	}
	k := strings.LastIndex(block, "</")
	return block[:k] + open + content + closing + block[k:]
}

// textEscaper escapes XML text minimally, keeping quotes as they are (AWS
// writes "object's" literally).
var textEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

func xmlEscape(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s))
	return b.String()
}

func xmlUnescape(s string) string {
	if !strings.Contains(s, "&") {
		return s
	}
	var v string
	if err := xml.Unmarshal([]byte("<x>"+s+"</x>"), &v); err != nil {
		return html.UnescapeString(s)
	}
	return v
}
