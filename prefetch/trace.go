package prefetch

import (
	"fmt"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
)

// readTrace notes what one read waited for, so that a slow read can say
// why it was slow: a playback stall is otherwise hard to pin on the store,
// the read-ahead or the machine.
type readTrace struct {
	class  string        // "stream", "random" or "tail"
	locked time.Duration // waiting for the file's lock
	ahead  time.Duration // starting and topping up the read-ahead window
	waits  [4]wait
	n      int // waits noted (at most len(waits))
	more   int // waits past len(waits)
}

// wait is one block or GET a read waited for.
type wait struct {
	what   string        // where the block came from (see demand), or "exact GET"
	idx    int64         // block index; for an exact GET, its first block
	age    time.Duration // how long the block's fetch had run when the read came
	landed int           // bytes of it there when the read came
	size   int           // the block's size, or the GET's
	took   time.Duration // how long the read waited for it
}

func (t *readTrace) note(w wait) {
	if t == nil {
		return
	}
	if t.n == len(t.waits) {
		t.more++
		return
	}
	t.waits[t.n] = w
	t.n++
}

func (t *readTrace) String() string {
	var b strings.Builder
	for i, w := range t.waits[:t.n] {
		if i > 0 {
			b.WriteString("; ")
		}
		switch w.what {
		case "exact GET":
			fmt.Fprintf(&b, "%s of %d bytes at block %d: %v", w.what, w.size, w.idx, w.took.Round(time.Millisecond))
		default:
			fmt.Fprintf(&b, "block %d (%s, begun %v before, %d of %d bytes there): waited %v",
				w.idx, w.what, w.age.Round(time.Millisecond), w.landed, w.size, w.took.Round(time.Millisecond))
		}
	}
	if t.more > 0 {
		fmt.Fprintf(&b, "; %d more", t.more)
	}
	if t.n == 0 {
		b.WriteString("no wait for the store or the disk")
	}
	// Time inside bucketfs that was not a wait for data.
	fmt.Fprintf(&b, "; the file's lock %v, read-ahead %v", t.locked.Round(time.Millisecond), t.ahead.Round(time.Millisecond))
	return b.String()
}

// slow logs and counts a read that took took, if that is slow.
func (r *Reader) slow(t *readTrace, off int64, size int, took time.Duration) {
	limit := r.m.cfg.SlowRead
	if limit <= 0 || took < limit {
		return
	}
	r.m.Stats.SlowReads.Add(1)
	if r.m.cfg.Log == nil {
		return
	}
	r.m.cfg.Log.WithFields(logrus.Fields{
		"bucket": r.v.Bucket, "key": r.v.Key, "offset": off, "size": size,
		"took": took.Round(time.Millisecond).String(), "class": t.class, "waits": t.String(),
	}).Info("slow read")
}
