package fs

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"syscall"
	"testing"

	"github.com/bucketfs/bucketfs/store"
	"github.com/sirupsen/logrus"
)

func storeErr(kind error) error {
	return &store.Error{Op: "GetObject", Bucket: "b", Key: "k", Kind: kind}
}

// TestToErrno maps every kind of store error, context errors and raw errnos
// to the errno a program sees, and checks which of them are logged and at
// what level: throttling and timeouts warn, unknown errors are errors, and
// the expected ones (missing file, stale handle, interrupted call) are quiet.
func TestToErrno(t *testing.T) {
	forgetLoggedErrors()
	tests := []struct {
		name     string
		err      error
		want     syscall.Errno
		wantLog  logrus.Level
		wantLogs int
	}{
		{name: "nil", err: nil, want: 0},
		{name: "not found", err: storeErr(store.ErrNotFound), want: syscall.ENOENT},
		{name: "wrapped not found", err: fmt.Errorf("lookup: %w", storeErr(store.ErrNotFound)), want: syscall.ENOENT},
		{name: "access denied", err: storeErr(store.ErrAccessDenied), want: syscall.EACCES},
		{name: "archived object", err: storeErr(store.ErrInvalidObjectState), want: syscall.EACCES},
		{name: "precondition failed", err: storeErr(store.ErrPreconditionFailed), want: syscall.ESTALE},
		{name: "cancelled", err: context.Canceled, want: syscall.EINTR},
		{name: "cancelled store request", err: errors.Join(context.Canceled, storeErr(store.ErrOther)), want: syscall.EINTR},
		{name: "cancelled fake request", err: &store.Error{Op: "GetObject", Kind: store.ErrOther, Err: context.Canceled}, want: syscall.EINTR},
		{name: "throttled", err: storeErr(store.ErrThrottled), want: syscall.EAGAIN, wantLog: logrus.WarnLevel, wantLogs: 1},
		{name: "deadline", err: errors.Join(context.DeadlineExceeded, storeErr(store.ErrOther)), want: syscall.EIO, wantLog: logrus.WarnLevel, wantLogs: 1},
		{name: "unreachable", err: storeErr(store.ErrUnreachable), want: syscall.EIO, wantLog: logrus.ErrorLevel, wantLogs: 1},
		{name: "invalid range", err: storeErr(store.ErrInvalidRange), want: syscall.EIO, wantLog: logrus.ErrorLevel, wantLogs: 1},
		{name: "other store error", err: storeErr(store.ErrOther), want: syscall.EIO, wantLog: logrus.ErrorLevel, wantLogs: 1},
		{name: "unknown error", err: errors.New("weird"), want: syscall.EIO, wantLog: logrus.ErrorLevel, wantLogs: 1},
		{name: "raw errno passes through", err: syscall.EBADF, want: syscall.EBADF},
		{name: "wrapped errno passes through", err: fmt.Errorf("read: %w", syscall.ENOSPC), want: syscall.ENOSPC},
		{name: "refused connection is EIO", err: &store.Error{Op: "GetObject", Kind: store.ErrUnreachable, Err: &url.Error{Op: "Get", URL: "http://127.0.0.1:1/b/k", Err: &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}}}, want: syscall.EIO, wantLog: logrus.ErrorLevel, wantLogs: 1},
		{name: "reset body is EIO", err: fmt.Errorf("GET b/k at byte 5: %w", &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}), want: syscall.EIO, wantLog: logrus.ErrorLevel, wantLogs: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log, hook := testLog()
			log = log.WithField("key", t.Name()) // a file of its own
			if got := toErrno(log, tt.err); got != tt.want {
				t.Errorf("toErrno(%v) = %v, want %v", tt.err, got, tt.want)
			}
			entries := hook.AllEntries()
			if len(entries) != tt.wantLogs {
				t.Fatalf("logged %d entries, want %d", len(entries), tt.wantLogs)
			}
			for _, e := range entries {
				if e.Level != tt.wantLog {
					t.Errorf("logged %q at %v, want %v", e.Message, e.Level, tt.wantLog)
				}
				if e.Data[logrus.ErrorKey] == nil {
					t.Errorf("log entry %q does not carry the error", e.Message)
				}
			}
		})
	}
}

// TestToErrnoLogsOncePerFile: a file failing again and again is logged
// once per errLogEvery; another file's failure is still logged.
func TestToErrnoLogsOncePerFile(t *testing.T) {
	forgetLoggedErrors()
	log, hook := testLog()
	a := log.WithFields(logrus.Fields{"bucket": "b", "key": t.Name() + "/a"})
	for range 50 {
		toErrno(a, storeErr(store.ErrOther))
	}
	toErrno(log.WithFields(logrus.Fields{"bucket": "b", "key": t.Name() + "/b"}), storeErr(store.ErrOther))
	if n := len(hook.AllEntries()); n != 2 {
		t.Fatalf("logged %d lines for 50 failures of one file and 1 of another, want 2", n)
	}
}

// forgetLoggedErrors resets the once-a-minute memory, so a test run again
// (go test -count) logs again.
func forgetLoggedErrors() {
	errLogs.Lock()
	clear(errLogs.last)
	errLogs.Unlock()
}

// TestFuseLogger: go-fuse's lines reach the daemon's log, one entry per
// line, as warnings, or at info when its request trace was asked for.
func TestFuseLogger(t *testing.T) {
	for _, debug := range []bool{false, true} {
		log, hook := testLog()
		fuseLogger(log, debug).Println("writer: Writev failed")
		e := hook.LastEntry()
		want := logrus.WarnLevel
		if debug {
			want = logrus.InfoLevel
		}
		if len(hook.AllEntries()) != 1 || e.Message != "writer: Writev failed" || e.Level != want || e.Data["component"] != "fuse" {
			t.Errorf("debug %v: %d entries, last %q at %v %v", debug, len(hook.AllEntries()), e.Message, e.Level, e.Data)
		}
	}
}
