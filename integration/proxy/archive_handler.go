package proxy

// The archive's request handling: the requests the proxy answers itself
// (RestoreObject, and GET or CopyObject / UploadPartCopy of an archived
// object that is not restored) and the S3 errors it answers with; and
// modifyResponse, which learns storage classes from the server's answers
// to PutObject, CopyObject, multipart uploads and DeleteObject, sets
// x-amz-storage-class and x-amz-restore on HEAD and GET of tracked
// objects, and passes ListObjectsV2 responses to archive_list.go.

import (
	"bytes"
	"crypto/rand"
	"encoding/xml"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

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
				if err := p.rewriteListing(resp, bucket, q, r.Header); err != nil {
					return err
				}
				return p.inlineListContent(resp, bucket, r.Header)
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
