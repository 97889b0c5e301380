package store

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// A ranged GET is only as good as the server's answer. A gateway or cache
// that ignores Range answers 200 with the whole object, and taking that
// body as the range would serve the bytes at offset 0 for a read at offset
// N. So every GET answer is checked before its body is handed out:
//
//   - 206 must carry "Content-Range: bytes S-E/T" with S the requested
//     offset and E the last requested byte, or T-1 when the request runs
//     past the end (the server clamps it); a Content-Length, when sent,
//     must equal E-S+1.
//   - 200 means the whole object. It is the expected answer to a request
//     without Range (offset 0, whole object), and the one legal answer to a
//     ranged request only when that request started at offset 0 and asked
//     for at least the whole object (Content-Length <= the requested
//     length): then the whole object is exactly the bytes asked for. A 200
//     must carry Content-Length.
//   - Any other status is an error.
//
// A failed check is an *Error of kind ErrBadResponse with the request id;
// the body is closed unread. The body of an accepted answer is a
// checkedBody, which fails a read (never io.EOF) if the body ends short of
// the promised length or runs past it.

// getAnswer is what the checks need of a GET response.
type getAnswer struct {
	status        int
	contentRange  string
	contentLength int64 // -1 when the header was absent
}

// checkGet validates the answer to a GET of length bytes at off (length
// < 0: to the end) and returns how many body bytes it promises and the
// whole object's size.
func checkGet(off, length int64, a getAnswer) (body, size int64, err error) {
	ranged := httpRange(off, length) != ""
	switch a.status {
	case http.StatusPartialContent:
		s, e, t, err := parseContentRange(a.contentRange)
		if err != nil {
			return 0, 0, err
		}
		end := t - 1
		if length >= 0 && off+length-1 < end {
			end = off + length - 1
		}
		if s != off || e != end {
			return 0, 0, fmt.Errorf("asked for bytes %d-%d, server sent Content-Range %q", off, end, a.contentRange)
		}
		if a.contentLength >= 0 && a.contentLength != e-s+1 {
			return 0, 0, fmt.Errorf("Content-Length %d disagrees with Content-Range %q", a.contentLength, a.contentRange)
		}
		return e - s + 1, t, nil
	case http.StatusOK:
		if a.contentLength < 0 {
			return 0, 0, errors.New("200 without Content-Length")
		}
		if ranged && (off != 0 || (length >= 0 && length < a.contentLength)) {
			return 0, 0, fmt.Errorf("server ignored Range %s: answered 200 with a whole object of %d bytes", httpRange(off, length), a.contentLength)
		}
		return a.contentLength, a.contentLength, nil
	}
	return 0, 0, fmt.Errorf("unexpected status %d to a GET", a.status)
}

// parseContentRange reads "bytes S-E/T" with 0 <= S <= E < T. A total of
// "*" is refused: without it a clamped range cannot be checked.
func parseContentRange(cr string) (s, e, t int64, err error) {
	bad := fmt.Errorf("malformed Content-Range %q", cr)
	rest, ok := strings.CutPrefix(cr, "bytes ")
	if !ok {
		return 0, 0, 0, bad
	}
	rng, total, ok := strings.Cut(rest, "/")
	if !ok {
		return 0, 0, 0, bad
	}
	first, last, ok := strings.Cut(rng, "-")
	if !ok {
		return 0, 0, 0, bad
	}
	var errs [3]error
	s, errs[0] = strconv.ParseInt(first, 10, 64)
	e, errs[1] = strconv.ParseInt(last, 10, 64)
	t, errs[2] = strconv.ParseInt(total, 10, 64)
	if errors.Join(errs[:]...) != nil || s < 0 || s > e || e >= t {
		return 0, 0, 0, bad
	}
	return s, e, t, nil
}

// checkedBody is a GET body that delivers exactly the promised number of
// bytes. It ends with io.EOF only once all of them came and the body ended
// there; a body that ends early fails with ErrBadResponse (wrapping
// io.ErrUnexpectedEOF) after handing out the bytes that did come, and one
// that runs past the promise fails the read that would have completed it.
// Transport errors pass through as they are.
type checkedBody struct {
	// Dependencies
	rc   io.ReadCloser
	fail func(error) error // wraps a violation into an *Error

	// Mutable state (a body is read by one goroutine at a time)
	promised int64
	left     int64 // bytes still to come
	err      error // sticky: io.EOF or the first violation
}

func (b *checkedBody) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.left == 0 {
		b.err = b.end()
		return 0, b.err
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	switch {
	case (err == io.EOF || err == io.ErrUnexpectedEOF) && b.left > 0:
		// net/http reports a body cut short of its Content-Length as
		// io.ErrUnexpectedEOF, one without Content-Length as io.EOF.
		b.err = b.fail(fmt.Errorf("body ended after %d of %d bytes: %w", b.promised-b.left, b.promised, io.ErrUnexpectedEOF))
		return n, b.err
	case err == io.EOF:
		b.err = io.EOF
		return n, nil
	case err != nil:
		return n, err
	case b.left == 0:
		// All promised bytes are here: make sure none follow before
		// handing out the last ones, since a reader that asked for exactly
		// the promised length would never look further.
		// The last bytes are dropped on any failure, so it is final.
		if b.err = b.end(); b.err != io.EOF {
			return 0, b.err
		}
	}
	return n, nil
}

// end checks that the body ends here: io.EOF if it does.
func (b *checkedBody) end() error {
	var one [1]byte
	n, err := io.ReadFull(b.rc, one[:])
	switch {
	case n > 0:
		return b.fail(fmt.Errorf("body runs past its %d bytes", b.promised))
	case err == io.EOF:
		return io.EOF
	}
	return err
}

func (b *checkedBody) Close() error { return b.rc.Close() }
