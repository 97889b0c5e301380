package proxy

// Emulation of Tigris's inline listing content: a ListObjectsV2 request
// carrying X-Tigris-List-Content: true gets, in each <Contents> element of
// an object no larger than the size set, a <Data> element holding the
// object's bytes in standard base64, as Tigris sends it (and tigrisfs
// reads it). The proxy cannot sign requests of its own, so the test gives
// it a function that reads an object from the server.

import (
	"bytes"
	"encoding/base64"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"sync"
)

// listContent is the emulation's setting.
type listContent struct {
	mu    sync.Mutex                               // protects the following
	max   int64                                    // largest object inlined; 0: off
	fetch func(bucket, key string) ([]byte, error) // reads an object from the server
	sent  int64                                    // objects inlined so far
}

var (
	contentsRE = regexp.MustCompile(`(?s)<Contents>.*?</Contents>`)
	keyRE      = regexp.MustCompile(`<Key>([^<]*)</Key>`)
	sizeRE     = regexp.MustCompile(`<Size>(\d+)</Size>`)
)

// EmulateTigrisListContent makes listings that ask for it carry the
// content of objects of at most max bytes, read with fetch; max 0 turns
// it off.
func (p *Proxy) EmulateTigrisListContent(max int64, fetch func(bucket, key string) ([]byte, error)) {
	p.lc.mu.Lock()
	p.lc.max, p.lc.fetch = max, fetch
	p.lc.mu.Unlock()
}

// InlinedObjects returns how many objects listings carried so far.
func (p *Proxy) InlinedObjects() int64 {
	p.lc.mu.Lock()
	defer p.lc.mu.Unlock()
	return p.lc.sent
}

// inlineListContent adds <Data> to the listing resp of bucket when the
// request asked for it and the emulation is on.
func (p *Proxy) inlineListContent(resp *http.Response, bucket string, reqHeader http.Header) error {
	p.lc.mu.Lock()
	max, fetch := p.lc.max, p.lc.fetch
	p.lc.mu.Unlock()
	if max == 0 || reqHeader.Get("X-Tigris-List-Content") != "true" {
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
	encoded := bytes.Contains(body, []byte("<EncodingType>url</EncodingType>"))
	var sent int64
	var ferr error
	out := contentsRE.ReplaceAllFunc(body, func(c []byte) []byte {
		km, sm := keyRE.FindSubmatch(c), sizeRE.FindSubmatch(c)
		if km == nil || sm == nil || ferr != nil {
			return c
		}
		size, _ := strconv.ParseInt(string(sm[1]), 10, 64)
		if size > max {
			return c
		}
		key := xmlUnescape(string(km[1]))
		if encoded {
			if key, err = url.QueryUnescape(key); err != nil {
				return c
			}
		}
		data, err := fetch(bucket, key)
		if err != nil {
			ferr = err
			return c
		}
		sent++
		end := len(c) - len("</Contents>")
		return append(append(append(c[:end:end], "<Data>"...), base64.StdEncoding.EncodeToString(data)...), "</Data></Contents>"...)
	})
	if ferr != nil {
		// As a server that inlines nothing: the listing goes as it was.
		out, sent = body, 0
	}
	p.lc.mu.Lock()
	p.lc.sent += sent
	p.lc.mu.Unlock()
	resp.Body = io.NopCloser(bytes.NewReader(out))
	resp.ContentLength = int64(len(out))
	resp.Header.Set("Content-Length", strconv.Itoa(len(out)))
	return nil
}
