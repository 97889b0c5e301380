package proxy

// The archive's listing rewriting: ListObjectsV2 responses get the storage
// class and, when asked for, the restore status of tracked objects, and the
// keys InjectListing added, merged in key order and paged with the real ones.

import (
	"bytes"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// emptyETag is the ETag of an empty object, used for injected keys.
const emptyETag = `"d41d8cd98f00b204e9800998ecf8427e"`

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
