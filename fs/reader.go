package fs

import (
	"context"
	"errors"
	"io"

	"github.com/bucketfs/bucketfs/store"
)

// ObjectVersion names one immutable version of an object: the bytes a
// handle reads. Every read path keys its data by it.
type ObjectVersion = store.Version

// ObjectReader reads byte ranges of one ObjectVersion; Config.NewReader
// makes one for each open handle. The daemon's is package prefetch's Reader,
// one type that serves each read from its block cache, from read-ahead or
// with a GET of exactly the bytes asked for. DirectReader (one ranged GET per
// read) is used only when no read path is configured (Config.NewReader nil,
// as in most of this package's tests). Implementations are safe for
// concurrent use; the kernel sends reads of one handle in parallel.
type ObjectReader interface {
	// ReadAt fills p from offset off, which is inside the object, and
	// returns how many bytes it read; fewer than len(p) only at the end of
	// the object. A changed object fails with store.ErrPreconditionFailed.
	ReadAt(ctx context.Context, p []byte, off int64) (int, error)
	// Close cancels outstanding work. The reader is not used afterwards.
	Close()
}

// RefReader is an ObjectReader that can hand out bytes in its own buffers
// instead of copying them into dest.
type RefReader interface {
	ObjectReader
	// ReadRef returns the bytes at [off, off+len(dest)): in dest, or in a
	// buffer of the reader's, in which case release is not nil and is
	// called once the bytes are no longer used.
	ReadRef(ctx context.Context, dest []byte, off int64) (data []byte, release func(), err error)
}

// DiskCache is a read path's persistent cache, as the tree sees it.
type DiskCache interface {
	// Warm brings every byte of v into the cache, returning once done.
	Warm(ctx context.Context, v ObjectVersion) error
	// CachedBytes is how many bytes of v the cache holds.
	CachedBytes(v ObjectVersion) int64
}

// DirectReader serves each read with one ranged GET carrying If-Match.
type DirectReader struct {
	st store.Store
	v  ObjectVersion
}

var _ ObjectReader = (*DirectReader)(nil)

// NewDirectReader returns a reader with no caching.
func NewDirectReader(st store.Store, v ObjectVersion) *DirectReader {
	return &DirectReader{st: st, v: v}
}

// ReadAt implements ObjectReader.
func (r *DirectReader) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	if rem := r.v.Size - off; int64(len(p)) > rem {
		p = p[:max(rem, 0)]
	}
	if len(p) == 0 {
		return 0, nil
	}
	out, err := r.st.Get(ctx, store.GetInput{Bucket: r.v.Bucket, Key: r.v.Key, Offset: off, Length: int64(len(p)), IfMatch: r.v.ETag})
	if err != nil {
		return 0, err
	}
	defer out.Body.Close()
	// p ends within the object, so fewer bytes mean a dropped connection,
	// not the end of the object.
	n, err := io.ReadFull(out.Body, p)
	if err != nil && ctx.Err() != nil {
		err = errors.Join(ctx.Err(), err)
	}
	return n, err
}

// Close implements ObjectReader.
func (r *DirectReader) Close() {}
