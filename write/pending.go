package write

import (
	"context"
	"strings"

	"github.com/bucketfs/bucketfs/store"
)

// PendingUnder lists the pending write-back files anywhere under prefix
// of bucket (a directory about to be renamed or removed), by key.
func (m *Manager) PendingUnder(bucket, prefix string) map[string]*File {
	out := map[string]*File{}
	for _, f := range m.pendingFiles() {
		if b, k, ok := f.pendingName(); ok && b == bucket && strings.HasPrefix(k, prefix) {
			out[k] = f
		}
	}
	return out
}

// Lookup returns the pending write-back file of bucket/key, if any (files
// recovered at start have no open handle until someone looks). A caller
// that keeps it should use Acquire: the file may be let go between Lookup
// and a Retain.
func (m *Manager) Lookup(bucket, key string) *File {
	for _, f := range m.pendingFiles() {
		if b, k, ok := f.pendingName(); ok && b == bucket && k == key {
			return f
		}
	}
	return nil
}

// Acquire is Lookup with a reference for the caller (Release it), taken
// while the file is pending, so it cannot be let go in between.
func (m *Manager) Acquire(bucket, key string) *File {
	for _, f := range m.pendingFiles() {
		f.mu.Lock()
		if f.wb != nil && f.bucket == bucket && f.key == key {
			f.refs++
			f.mu.Unlock()
			return f
		}
		f.mu.Unlock()
	}
	return nil
}

// PendingIn lists the pending files directly under prefix of bucket, by
// their name below prefix.
func (m *Manager) PendingIn(bucket, prefix string) map[string]*File {
	out := map[string]*File{}
	for _, f := range m.pendingFiles() {
		b, k, ok := f.pendingName()
		if !ok || b != bucket {
			continue
		}
		if rest, ok := strings.CutPrefix(k, prefix); ok && rest != "" && !strings.Contains(rest, "/") {
			out[rest] = f
		}
	}
	return out
}

// pendingName returns f's name and whether it is pending.
func (f *File) pendingName() (bucket, key string, pending bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.bucket, f.key, f.wb != nil
}

// OnStored sets fn to be called (with no lock held) when a write-back
// upload of f lands and nothing newer of it is pending, with the object
// the store now holds: the file system shows it from then on.
func (f *File) OnStored(fn func(store.Object)) {
	f.mu.Lock()
	f.onStored = fn
	f.mu.Unlock()
}

// Pending reports whether a write-back upload of f is not finished, and
// its size.
func (f *File) Pending() (bool, int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.wb == nil {
		return false, f.size
	}
	return true, f.wb.rec.Size
}

// Wait waits until nothing of f is on its way to the store: no commit
// runs and no write-back upload is pending (older versions included).
func (f *File) Wait(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for f.wb != nil || f.committing || f.finishing > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		waitCond(ctx, f.cond)
	}
	return nil
}
