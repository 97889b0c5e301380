package write

import (
	"context"
	"errors"
	"strings"
	"sync"

	"github.com/bucketfs/bucketfs/store"
)

// CopySpec is a server-side copy of Src (in SrcBucket) to Bucket/Key.
type CopySpec struct {
	SrcBucket string
	Src       store.Object // Key, ETag and Size are used
	Bucket    string
	Key       string
	// ReplaceMetadata stores Metadata instead of the source's.
	ReplaceMetadata bool
	Metadata        map[string]string
	// StorageClass is the copy's class: empty keeps the source's when it
	// is not an archive class (STANDARD otherwise... the bucket's default).
	StorageClass string
	// Rename asks Tigris for a metadata-only rename (the source goes).
	Rename bool
}

// Copy copies an object server-side: one CopyObject up to 5 GiB, a
// multipart copy (UploadPartCopy of 1 GiB parts) above. The source must
// still be version Src.ETag.
func (m *Manager) Copy(ctx context.Context, c CopySpec) (store.Object, error) {
	return m.copyObject(ctx, c)
}

func (m *Manager) copyObject(ctx context.Context, c CopySpec) (store.Object, error) {
	if len(c.Key) > store.MaxKeyLen {
		return store.Object{}, errNameTooLong(c.Key)
	}
	meta := c.Metadata
	if !c.ReplaceMetadata {
		meta = c.Src.Metadata
	}
	class := c.StorageClass
	if class == "" && !store.Archived(c.Src.StorageClass) {
		class = c.Src.StorageClass
	}
	if class == "STANDARD" && c.Src.StorageClass == "" {
		class = ""
	}
	if c.Src.Size <= m.copyLimit || c.Rename {
		o, err := m.st.Copy(ctx, store.CopyInput{
			SrcBucket: c.SrcBucket, SrcKey: c.Src.Key, SrcETag: c.Src.ETag,
			Bucket: c.Bucket, Key: c.Key, ReplaceMetadata: c.ReplaceMetadata, Metadata: c.Metadata,
			StorageClass: class, Rename: c.Rename,
		})
		if err != nil {
			return store.Object{}, err
		}
		m.serverCopies.Add(1)
		m.copiedBytes.Add(c.Src.Size)
		out := *o
		out.Key, out.Size, out.Metadata, out.StorageClass = c.Key, c.Src.Size, meta, class
		return out, nil
	}
	// Above 5 GiB: a multipart upload of copied parts. When the metadata
	// is copied, it has to come from a HEAD (listings do not carry it).
	if !c.ReplaceMetadata && meta == nil {
		h, err := m.st.Head(ctx, c.SrcBucket, c.Src.Key)
		if err != nil {
			return store.Object{}, err
		}
		if unquote(h.ETag) != unquote(c.Src.ETag) {
			return store.Object{}, &store.Error{Op: "CopyObject", Bucket: c.SrcBucket, Key: c.Src.Key, Kind: store.ErrPreconditionFailed, Err: errors.New("source changed")}
		}
		meta = h.Metadata
	}
	id, err := m.st.CreateMultipart(ctx, store.CreateMultipartInput{Bucket: c.Bucket, Key: c.Key, Metadata: meta, StorageClass: class})
	if err != nil {
		return store.Object{}, err
	}
	part := m.copyPart // 1 GiB: at most 5,120 parts for 5 TiB
	n := int32((c.Src.Size + part - 1) / part)
	parts := make([]store.CompletedPart, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	lim := make(chan struct{}, perFileUploads)
	for i := int32(0); i < n; i++ {
		off := int64(i) * part
		length := min(part, c.Src.Size-off)
		select {
		case lim <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			errs[i] = ctx.Err()
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-lim }()
			if err := m.acquire(ctx); err != nil {
				errs[i] = err
				return
			}
			defer m.release()
			etag, err := m.st.UploadPartCopy(ctx, store.UploadPartCopyInput{
				Bucket: c.Bucket, Key: c.Key, UploadID: id, Part: i + 1,
				SrcBucket: c.SrcBucket, SrcKey: c.Src.Key, SrcETag: c.Src.ETag, Offset: off, Length: length,
			})
			errs[i] = err
			parts[i] = store.CompletedPart{Part: i + 1, ETag: etag}
		}()
	}
	wg.Wait()
	if err := firstErr(errs); err != nil {
		m.abort(&mpu{bucket: c.Bucket, key: c.Key, id: id})
		return store.Object{}, err
	}
	o, err := m.st.CompleteMultipart(ctx, store.CompleteMultipartInput{Bucket: c.Bucket, Key: c.Key, UploadID: id, Parts: parts, Size: c.Src.Size})
	if err != nil {
		m.abort(&mpu{bucket: c.Bucket, key: c.Key, id: id})
		return store.Object{}, err
	}
	m.serverCopies.Add(int64(n))
	m.copiedBytes.Add(c.Src.Size)
	out := *o
	out.Key, out.Size, out.Metadata, out.StorageClass = c.Key, c.Src.Size, meta, class
	return out, nil
}

// Delete removes an object (a missing one is not an error).
func (m *Manager) Delete(ctx context.Context, bucket, key string) error {
	return m.st.Delete(ctx, bucket, key)
}

// PutEmpty stores an empty object (a directory marker "dir/", or an empty
// file), only if absent when exclusive.
func (m *Manager) PutEmpty(ctx context.Context, bucket, key string, meta map[string]string, exclusive bool) (store.Object, error) {
	if len(key) > store.MaxKeyLen {
		return store.Object{}, errNameTooLong(key)
	}
	class := m.class
	if strings.HasSuffix(key, "/") {
		class = ""
	}
	o, err := m.createIfAbsent(ctx, "PutObject", bucket, key, exclusive, func(ifNoneMatch bool) (*store.Object, error) {
		return m.st.Put(ctx, store.PutInput{Bucket: bucket, Key: key, Body: strings.NewReader(""), Metadata: meta,
			StorageClass: class, IfNoneMatch: ifNoneMatch})
	})
	if err != nil {
		return store.Object{}, err
	}
	m.objectsWritten.Add(1)
	out := *o
	out.Key, out.Size, out.Metadata, out.StorageClass = key, 0, meta, class
	return out, nil
}
