package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/bucketfs/bucketfs/cache"
	"github.com/bucketfs/bucketfs/counters"
	bfs "github.com/bucketfs/bucketfs/fs"
	"github.com/bucketfs/bucketfs/prefetch"
	"github.com/bucketfs/bucketfs/store"
	"github.com/bucketfs/bucketfs/write"
	"github.com/moby/sys/mountinfo"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
)

func newMountCmd(run func(*mountOptions) error) *cobra.Command {
	o := &mountOptions{}
	c := &cobra.Command{
		Use:   "mount [flags] [BUCKET[/PREFIX]] MOUNTPOINT",
		Short: "Mount a bucket, a prefix of one, or all buckets",
		Long: `Mount a bucket (or a prefix inside it) at MOUNTPOINT. Without BUCKET the
mount root lists every bucket of the account as a directory.

Credentials, region, profile and endpoint come from the standard AWS chain
(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_PROFILE, AWS_REGION,
AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, ~/.aws/config); flags win.

bucketfs runs in the foreground until the mount is unmounted (umount
MOUNTPOINT) or it gets SIGINT or SIGTERM, which unmount it. With files open
the mount is detached and bucketfs exits 0 when the last one is closed; a
second signal logs what it waits for, a third exits at once (status 128 +
the signal's number: 130 for SIGINT, 143 for SIGTERM).

Files written are uploaded when they are closed or fsynced, which return
the upload's error. With --write-back (and --cache-dir) they return once the
bytes are on local disk and the upload goes on in the background, across
restarts; unmounting waits up to --unmount-wait for it, and 'bucketfs sync
MOUNTPOINT' waits until nothing is pending. --read-only refuses every
change with EROFS.`,
		Example: `  bucketfs mount --endpoint https://t3.storage.dev --region auto my-bucket /mnt/sets
  bucketfs mount --endpoint http://127.0.0.1:9000 --path-style my-bucket/2024 /mnt/2024
  bucketfs mount --cache-dir /var/cache/bucketfs/rec --write-back my-bucket /mnt/rec
  bucketfs mount --read-only my-bucket /mnt/sets`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(c *cobra.Command, args []string) error {
			if err := o.finish(args); err != nil {
				return err
			}
			return run(o)
		},
	}
	bindFlags(c.Flags(), o)
	return c
}

// runMount checks what it can, mounts, and serves until unmounted.
func runMount(o *mountOptions) error {
	// Catch signals from the start: one that arrives while mounting is
	// served as soon as the mount is up.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	log, err := newLogger(o)
	if err != nil {
		return err
	}
	mnt, err := checkMountpoint(o.Mountpoint)
	if err != nil {
		return err
	}
	ctx := context.Background()
	retries := o.MaxRetries
	if retries == 0 {
		retries = -1 // none (the store's 0 means its default)
	}
	s3, err := store.NewS3(ctx, store.S3Config{Endpoint: o.Endpoint, Region: o.Region, Profile: o.Profile, PathStyle: o.PathStyle,
		MaxRetries: retries, RequestTimeout: o.RequestTimeout})
	if err != nil {
		return fmt.Errorf("loading AWS configuration: %v", err)
	}
	var st store.Store = s3
	reg := prometheus.NewRegistry()
	if o.MetricsAddr != "" {
		st = newMeteredStore(s3, reg)
	}
	if err := checkStore(ctx, st, o); err != nil {
		return err
	}
	// After checkStore: a Tigris behind a custom domain is known by the
	// Server header of its first answer.
	tigrisRename := resolveTigrisRename(o.TigrisRename, s3.Tigris)
	listContent := resolveTigrisRename(o.ListContent, s3.Tigris)

	if o.CPUProfile != "" {
		f, err := os.Create(o.CPUProfile)
		if err != nil {
			return fmt.Errorf("--cpu-profile: %v", err)
		}
		pprof.StartCPUProfile(f)
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	rp, err := prefetch.New(st, readOptions(o, log))
	if err != nil {
		if o.CacheDir != "" {
			return fmt.Errorf("--cache-dir: %v", err)
		}
		return err
	}
	defer rp.Close()
	// The write path, after the read path: its directory lies in the
	// cache directory, which the read path has created and locked.
	var (
		wm    *write.Manager
		drain *uploadDrain
	)
	if !o.ReadOnly {
		wm, err = write.New(writeOptions(o, st, log, fsTotal))
		if err != nil {
			return fmt.Errorf("write path: %v", err)
		}
		drain = newUploadDrain(wm, log.WithField("component", "write"), sdNotify, o.UnmountWait, journalDir(o))
		defer drain.Close()
	}
	tree := &bfs.Counters{}
	table := counterTable(rp, s3, tree, wm)
	if err := table.Check(); err != nil {
		return err
	}
	if o.MetricsAddr != "" {
		registerCounters(reg, table)
		srv, err := serveMetrics(o.MetricsAddr, reg)
		if err != nil {
			return err
		}
		defer srv.Close()
	}
	// Background work (restore watchers) ends with the mount.
	bgCtx, stopBackground := context.WithCancel(ctx)
	defer stopBackground()
	// The garbage collector keeps the heap near what the read path may
	// hold and the cached directory listings hold now, not at twice the
	// live size.
	go followMemoryLimit(bgCtx, rp.MemoryLimit(), &tree.ListingBytes, time.Second)
	cfg := bfs.Config{
		Store:       st,
		NewReader:   func(v store.Version) bfs.ObjectReader { return rp.NewReader(v) },
		Stats:       table.Snapshot,
		Counters:    tree,
		Log:         log.WithField("component", "fs"),
		Bucket:      o.Bucket,
		Prefix:      o.Prefix,
		UID:         o.UID,
		GID:         o.GID,
		FileMode:    o.FileMode,
		DirMode:     o.DirMode,
		MetadataTTL: o.MetadataTTL,
		NegativeTTL: o.NegativeTTL,

		Mountpoint:       mnt,
		AutoRestoreDays:  o.AutoRestoreDays,
		RestorePoll:      o.RestoreCheck,
		RestoreCheckRate: o.RestoreRate,
		Ctx:              bgCtx,

		Writer:         wm,
		ReadOnly:       o.ReadOnly,
		TigrisRename:   tigrisRename,
		RenameDirLimit: o.RenameDirLimit,
	}
	if rp.HasDisk() {
		cfg.Disk = rp
	}
	if o.FilesAhead {
		cfg.Ahead = rp
	}
	if listContent {
		cfg.ListContent = rp
	}
	server, err := bfs.Mount(mnt, cfg, bfs.MountOptions{AllowOther: o.AllowOther, Debug: o.DebugFUSE})
	if err != nil {
		return fmt.Errorf("mounting %s: %v", mnt, err)
	}
	mlog := log.WithFields(logrus.Fields{"component": "mount", "mountpoint": mnt, "bucket": o.Bucket, "prefix": o.Prefix})
	if err := bfs.SetKernelReadahead(mnt, bfs.DefaultMaxRead); err != nil {
		mlog.WithError(err).Info("kernel read-ahead left at 128 KiB: large reads arrive as 128 KiB requests")
		rp.SetSplitBytes(2 * 128 << 10)
	} else {
		// One random read may arrive as two contiguous requests of up to
		// the read-ahead each (prefetch.Options.SplitBytes): not a stream.
		rp.SetSplitBytes(2 * bfs.DefaultMaxRead)
	}
	mlog.WithFields(logrus.Fields{"read_only": o.ReadOnly, "write_back": o.WriteBack, "tigris_rename": tigrisRename, "tigris_list_content": listContent}).Info("mounted")
	notifyMounted(log, o.LogFile)
	if wm != nil {
		// Uploads a stopped daemon left in the journal go now that the
		// mount shows their files.
		found, err := wm.Start(bgCtx)
		wlog := log.WithFields(logrus.Fields{"component": "write", "journal": journalDir(o)})
		switch {
		case err != nil:
			wlog.WithError(err).Error("reading the write-back journal; its uploads wait for the next start")
		case found > 0 || o.WriteBack:
			wlog.WithField("uploads", found).Info("write-back uploads left by the last run: uploading them")
		}
	}

	id := mountID(mnt)
	h := &signalHandler{
		server:    server,
		log:       mlog,
		openFiles: rp.Stats.OpenReaders.Load,
		holders:   func() []string { return mountHolders("/proc", id, mnt) },
		detach:    func() error { return syscall.Unmount(mnt, syscall.MNT_DETACH) },
		exit:      os.Exit,
		notify:    sdNotify,
		timeout:   time.Second,
		clock:     time.Now,
	}
	if drain != nil {
		h.uploads = drain
	}
	go h.serve(sigs)
	server.Wait()
	mlog.Info("unmounted")
	if drain != nil {
		drain.Close()
	}
	return nil
}

func newLogger(o *mountOptions) (*logrus.Logger, error) {
	log := logrus.New()
	log.SetOutput(os.Stderr)
	if o.LogFile != "" {
		f, err := os.OpenFile(o.LogFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("--log-file: %v", err)
		}
		log.SetOutput(f)
	}
	lvl, err := logrus.ParseLevel(o.LogLevel)
	if err != nil {
		return nil, fmt.Errorf("--log-level: %q is not one of debug, info, warn, error", o.LogLevel)
	}
	log.SetLevel(lvl)
	if o.LogFormat == "json" {
		log.SetFormatter(&logrus.JSONFormatter{})
	} else {
		log.SetFormatter(&logrus.TextFormatter{FullTimestamp: true})
	}
	return log, nil
}

// checkMountpoint returns the absolute mountpoint, or why it cannot be used.
func checkMountpoint(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("mountpoint %s: %v", path, err)
	}
	fi, err := os.Stat(abs)
	switch {
	case errors.Is(err, syscall.ENOTCONN):
		return "", fmt.Errorf("mountpoint %s is a disconnected FUSE mount (a daemon that died?); clear it with: umount -l %s", abs, abs)
	case errors.Is(err, os.ErrNotExist):
		return "", fmt.Errorf("mountpoint %s does not exist", abs)
	case err != nil:
		return "", fmt.Errorf("mountpoint %s: %v", abs, err)
	case !fi.IsDir():
		return "", fmt.Errorf("mountpoint %s is not a directory", abs)
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real
	}
	mounted, err := isMountpoint(abs)
	if err != nil {
		return "", err
	}
	if mounted {
		// The kernel may answer stat from cached attributes even when the
		// daemon behind the mount is gone; statfs always asks it.
		var st unix.Statfs_t
		if err := unix.Statfs(abs, &st); errors.Is(err, syscall.ENOTCONN) {
			return "", fmt.Errorf("mountpoint %s is a disconnected FUSE mount (a daemon that died?); clear it with: umount -l %s", abs, abs)
		}
		return "", fmt.Errorf("mountpoint %s is already a mount; unmount it first: umount %s", abs, abs)
	}
	return abs, nil
}

// isMountpoint reports whether dir (absolute, symlinks resolved) is the
// mount point of a mount in this process's namespace. It reads the mount
// table rather than comparing devices, so a bind mount counts and a FUSE
// mount whose daemon died is found without touching it.
func isMountpoint(dir string) (bool, error) {
	mounts, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(dir))
	if err != nil {
		return false, fmt.Errorf("reading mount table: %v", err)
	}
	return len(mounts) > 0, nil
}

// checkStore makes one bounded request that proves the endpoint answers, the
// credentials work and the bucket exists.
func checkStore(ctx context.Context, st store.Store, o *mountOptions) error {
	ctx, cancel := context.WithTimeout(ctx, o.StartupTimeout)
	defer cancel()
	var err error
	if o.Bucket == "" {
		_, err = st.ListBuckets(ctx)
	} else {
		_, err = st.List(ctx, store.ListInput{Bucket: o.Bucket, Prefix: o.Prefix, MaxKeys: 1})
	}
	if err == nil {
		return nil
	}
	return describeStoreErr(err, o)
}

// describeStoreErr turns a failed start-up request into one clear sentence.
func describeStoreErr(err error, o *mountOptions) error {
	ep := endpointName(o)
	code := store.ErrorCode(err)
	msg := err.Error()
	switch {
	// First: a failed credential lookup never reached the endpoint, though
	// it may carry the metadata service's dial error or timeout. The SDK
	// says "get credentials" (auth resolver) or "retrieve credentials"
	// (older signer).
	case strings.Contains(msg, "get credentials") || strings.Contains(msg, "retrieve credentials"):
		return fmt.Errorf("no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE")
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("endpoint %s unreachable: no answer within %s", ep, o.StartupTimeout)
	case errors.Is(err, store.ErrUnreachable):
		return fmt.Errorf("endpoint %s unreachable: %v", ep, rootCause(err))
	case store.CredentialsRejected(err):
		return fmt.Errorf("credentials rejected by %s (%s); check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY or --profile", ep, code)
	case errors.Is(err, store.ErrAccessDenied):
		what := "listing buckets"
		if o.Bucket != "" {
			what = fmt.Sprintf("bucket %q", o.Bucket)
		}
		return fmt.Errorf("access denied to %s by %s (%s); check the credentials and their permissions", what, ep, orStatus(code, "403"))
	case errors.Is(err, store.ErrNotFound) && o.Bucket != "":
		return fmt.Errorf("bucket %q not found at %s", o.Bucket, ep)
	}
	return fmt.Errorf("checking %s: %v", ep, err)
}

func orStatus(code, status string) string {
	if code != "" {
		return code
	}
	return status
}

// rootCause returns the innermost error's text, e.g. "connection refused".
func rootCause(err error) string {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			break
		}
		err = next
	}
	var se *store.Error
	if errors.As(err, &se) && se.Err != nil {
		return rootCause(se.Err)
	}
	return err.Error()
}

func endpointName(o *mountOptions) string {
	for _, ep := range []string{o.Endpoint, os.Getenv("AWS_ENDPOINT_URL_S3"), os.Getenv("AWS_ENDPOINT_URL")} {
		if ep != "" {
			return ep
		}
	}
	return "AWS S3"
}

// readOptions are the read path's options from the mount's flags.
func readOptions(o *mountOptions, log *logrus.Logger) prefetch.Options {
	ro := prefetch.Options{
		CacheMemory:  o.CacheMemory,
		BlockSize:    o.BlockSize,
		MaxReadahead: o.MaxReadahead,
		MaxGets:      o.MaxGets,
		MaxRetries:   o.MaxRetries,
		StallTimeout: o.RequestTimeout,
		SlowRead:     o.SlowRead,
		Log:          log.WithField("component", "read"),
	}
	if o.CacheDir != "" {
		ro.Disk = &cache.DiskConfig{
			Dir: o.CacheDir, MaxBytes: o.CacheSize,
			MinFree: o.CacheMinFree, MinFreePercent: o.CacheMinFreePercent,
			Log: log.WithField("component", "cache"),
		}
	}
	return ro
}

// counterTable is every counter of the daemon: the read path's, the
// object store client's, the tree's and the write path's (w is nil on a
// read-only mount, whose table has no write_* counters).
func counterTable(rp *prefetch.Manager, s3 *store.S3, tree *bfs.Counters, w *write.Manager) counters.Table {
	t := counters.Table(rp.Counters())
	if w != nil {
		t = append(t, w.Counters()...)
	}
	t = append(t,
		counters.New("s3_retries", "Requests the SDK sent again after a failure.", s3.Retries.Load),
		counters.Gauge("s3_connections", "Connections to the object store open now, idle or busy.", s3.Conns.Load),
		counters.Gauge("goroutines", "Goroutines of the daemon.", func() int64 { return int64(runtime.NumGoroutine()) }),
	)
	return append(t, tree.Counters()...)
}
