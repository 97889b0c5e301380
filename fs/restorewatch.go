package fs

import (
	"container/heap"
	"errors"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/bucketfs/bucketfs/store"
	"github.com/sirupsen/logrus"
)

// restoreWatcher checks running restores with HEAD until they complete,
// for every file of one mount: one goroutine, a heap of due checks, HEADs
// spaced by a rate limit. Each file's checks back off from RestorePoll,
// doubling up to 16 times it, and every due time is jittered by ±20%, so
// 2,000 restores started at once neither start 2,000 goroutines nor send
// their HEADs in waves. The goroutine starts with the first watched file
// and ends with the mount's context. It waits on the wall clock, as the
// kernel and the store do; file states still follow Config.Now.
//
// Lock order: restoreWatcher.mu is a leaf; checks (f.revalidate, which
// takes fileNode.mu) run without it.
type restoreWatcher struct {
	// Dependencies
	m *mountState

	// Constant data
	// gap is the least time between two HEADs (1 / the rate).
	gap time.Duration
	// wake is signalled when an earlier check is due.
	wake chan struct{}

	// Mutable state
	mu      sync.Mutex               // protects the following, and the watchItems in watched
	due     watchHeap                // GUARDED_BY(mu)
	watched map[*fileNode]*watchItem // GUARDED_BY(mu); every file watched, due or being checked
	running bool                     // GUARDED_BY(mu); the goroutine has started
}

// watchItem is one watched file.
type watchItem struct {
	// Constant data
	f *fileNode

	// Mutable state
	at    time.Time     // GUARDED_BY(restoreWatcher.mu); when its next check is due
	delay time.Duration // GUARDED_BY(restoreWatcher.mu); the interval that led to at
	index int           // GUARDED_BY(restoreWatcher.mu); place in the heap; -1 while being checked
}

func newRestoreWatcher(m *mountState, perSecond float64) *restoreWatcher {
	gap := time.Duration(0)
	if perSecond > 0 {
		gap = time.Duration(float64(time.Second) / perSecond)
	}
	return &restoreWatcher{m: m, gap: gap, watched: map[*fileNode]*watchItem{}, wake: make(chan struct{}, 1)}
}

// watch schedules checks of f's running restore, unless f is watched
// already.
func (w *restoreWatcher) watch(f *fileNode) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.watched[f]; ok || w.m.ctx.Err() != nil {
		return
	}
	it := &watchItem{f: f, delay: w.m.cfg.RestorePoll}
	it.at = time.Now().Add(jitter(it.delay))
	w.watched[f] = it
	heap.Push(&w.due, it)
	if !w.running {
		w.running = true
		go w.run()
	}
	if w.due[0] == it {
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

// unwatch stops checks of f (the kernel forgot it; a later node for the
// same key is watched when its state shows the restore running).
func (w *restoreWatcher) unwatch(f *fileNode) {
	w.mu.Lock()
	defer w.mu.Unlock()
	it, ok := w.watched[f]
	if !ok {
		return
	}
	delete(w.watched, f)
	if it.index >= 0 {
		heap.Remove(&w.due, it.index)
	}
}

// count returns how many files are watched.
func (w *restoreWatcher) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.watched)
}

// jitter returns d give or take 20%.
func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// run serves due checks until the mount's context ends.
func (w *restoreWatcher) run() {
	ctx := w.m.ctx
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var last time.Time // when the last HEAD was sent
	for {
		w.mu.Lock()
		var wait time.Duration = time.Hour
		var it *watchItem
		if len(w.due) > 0 {
			next := w.due[0]
			at := next.at
			if earliest := last.Add(w.gap); at.Before(earliest) {
				at = earliest // the rate limit
			}
			if wait = at.Sub(time.Now()); wait <= 0 {
				it = heap.Pop(&w.due).(*watchItem)
			}
		}
		w.mu.Unlock()
		if it == nil {
			timer.Reset(wait)
			select {
			case <-ctx.Done():
				return
			case <-w.wake:
				if !timer.Stop() {
					<-timer.C
				}
			case <-timer.C:
			}
			continue
		}
		last = time.Now()
		done := w.check(it.f)
		w.mu.Lock()
		if _, still := w.watched[it.f]; !still {
			// unwatched while being checked
		} else if done {
			delete(w.watched, it.f)
		} else {
			it.delay = min(it.delay*2, 16*w.m.cfg.RestorePoll)
			it.at = time.Now().Add(jitter(it.delay))
			heap.Push(&w.due, it)
		}
		w.mu.Unlock()
		if ctx.Err() != nil {
			return
		}
	}
}

// check sends one HEAD for f and reports whether its restore is over
// (complete, ended, or the object gone).
func (w *restoreWatcher) check(f *fileNode) bool {
	_, err := f.revalidate(w.m.ctx)
	switch s, o := f.state(); {
	case errors.Is(err, store.ErrNotFound):
		return true
	case err != nil:
		f.log().WithError(err).Debug("checking a restore")
		return false
	case s == restored:
		f.log().WithFields(logrus.Fields{"path": f.path(), "expiry": o.Restore.Expiry}).Warn("restore complete: the file is readable")
		return true
	case s != restoring:
		f.log().WithField("path", f.path()).Warn("restore ended without a readable copy")
		return true
	}
	return false
}

// watchHeap orders watched files by due time (container/heap).
type watchHeap []*watchItem

func (h watchHeap) Len() int           { return len(h) }
func (h watchHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h watchHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *watchHeap) Push(x any) {
	it := x.(*watchItem)
	it.index = len(*h)
	*h = append(*h, it)
}
func (h *watchHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = nil
	it.index = -1
	*h = old[:len(old)-1]
	return it
}
