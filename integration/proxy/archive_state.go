package proxy

// The archive's state model: what the proxy knows of one object (its
// storage class and restore state) and how a restore runs its course,
// ongoing until the restore delay has passed, then readable until its
// expiry. The clock is the wall clock: time.Now is read where a request
// needs the state and passed to lookup and settle as now. Tests move a
// restore on with FinishRestore, ExpireRestore or SetRestoreDelay rather
// than wait.

import (
	"net/http"
	"time"
)

// objState is what the proxy knows about one object.
type objState struct {
	class    string
	ongoing  bool      // a restore is running
	start    time.Time // when the running restore was asked for
	days     int       // Days of the running restore
	restored bool      // a restored copy is readable until expiry
	expiry   time.Time
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
