package fs

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync"
	"syscall"
	"time"

	"github.com/bucketfs/bucketfs/store"
	"github.com/sirupsen/logrus"
)

// toErrno is the one place where store errors become errnos. Unknown errors
// become EIO and are logged, with the request id when the server gave one,
// at most once a minute per file and kind of failure: a player retrying a
// read in a loop while the store is down must not flood the log.
func toErrno(log *logrus.Entry, err error) syscall.Errno {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, context.Canceled):
		return syscall.EINTR
	case errors.Is(err, store.ErrNotFound):
		return syscall.ENOENT
	case errors.Is(err, store.ErrAccessDenied), errors.Is(err, store.ErrInvalidObjectState):
		return syscall.EACCES
	case errors.Is(err, store.ErrPreconditionFailed):
		return syscall.ESTALE
	case errors.Is(err, store.ErrThrottled):
		logLimited(log, err, logrus.WarnLevel, "object store is throttling requests; retries ran out (EAGAIN)")
		return syscall.EAGAIN
	case errors.Is(err, context.DeadlineExceeded):
		logLimited(log, err, logrus.WarnLevel, "request timed out (EIO)")
		return syscall.EIO
	}
	// An errno of our own passes through; one from a network call (the
	// store refused, reset or went away) is an I/O error to the reader,
	// not ECONNREFUSED.
	var errno syscall.Errno
	var opErr *net.OpError
	var urlErr *url.Error
	if errors.As(err, &errno) && !errors.As(err, &opErr) && !errors.As(err, &urlErr) {
		return errno
	}
	logLimited(log, err, logrus.ErrorLevel, "request failed (EIO)")
	return syscall.EIO
}

// errLogEvery is how often one file's failures of one kind are logged.
const errLogEvery = time.Minute

var errLogs = struct {
	// Mutable state
	sync.Mutex                      // protects the following
	last       map[string]time.Time // GUARDED_BY(Mutex); when each message was last logged for each file
}{last: map[string]time.Time{}}

// logLimited logs msg with err unless the same message for the same file
// (the entry's bucket, key and name fields) was logged within errLogEvery.
func logLimited(log *logrus.Entry, err error, level logrus.Level, msg string) {
	k := fmt.Sprint(msg, "\x00", log.Data["bucket"], "\x00", log.Data["key"], "\x00", log.Data["name"])
	now := time.Now()
	errLogs.Lock()
	last, seen := errLogs.last[k]
	if seen && now.Sub(last) < errLogEvery {
		errLogs.Unlock()
		return
	}
	if len(errLogs.last) > 10000 {
		clear(errLogs.last) // bound the memory; at worst a line is repeated
	}
	errLogs.last[k] = now
	errLogs.Unlock()
	log.WithError(err).Log(level, msg)
}
