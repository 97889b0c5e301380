package fs

import (
	"context"
	"errors"
	"syscall"

	"github.com/bucketfs/bucketfs/store"
	"github.com/sirupsen/logrus"
)

// toErrno is the one place where store errors become errnos. Unknown errors
// become EIO and are logged, with the request id when the server gave one.
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
		log.WithError(err).Warn("object store is throttling requests")
		return syscall.EAGAIN
	case errors.Is(err, context.DeadlineExceeded):
		log.WithError(err).Warn("request timed out")
		return syscall.EIO
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno
	}
	log.WithError(err).Error("request failed")
	return syscall.EIO
}
