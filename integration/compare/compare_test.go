//go:build compare

package compare

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/bucketfs/bucketfs/integration/harness"
	"github.com/bucketfs/bucketfs/integration/proxy"
	"golang.org/x/sys/unix"
)

// TestCompare runs every workload through bucketfs and each peer that can
// run, on one versitygw behind one 20 ms proxy, and (on a full run) writes
// integration/COMPARE.md, integration/compare.png and the README's
// section. Settings, for short runs while developing:
//
//	COMPARE_WORKLOADS=seq,rand  only these rows (IDs in workloads())
//	COMPARE_TOOLS=bucketfs,s3fs only these tools ("bucketfs --write-back"
//	                            is the variant's name)
//	COMPARE_SIZE=256MiB         the large objects' size (1GiB)
//	COMPARE_PAR_SIZE=512MiB     each of row 2's four objects (COMPARE_SIZE)
//	COMPARE_MANY=10000          entries of the large directory (100000)
//	COMPARE_BUDGET=14m          the test's time budget (building and
//	                            installing before it take about a minute of
//	                            make compare's fifteen)
//	COMPARE_OUT=DIR             write the report there instead
//
// A run with any of these but COMPARE_BUDGET and COMPARE_OUT set writes its
// report to a temporary directory (or COMPARE_OUT), never over the
// published one.
func TestCompare(t *testing.T) {
	start := time.Now()
	ok, why := harness.FUSEAvailable()
	if !ok {
		t.Fatalf("FUSE: %s", why)
	}
	cfg := loadConfig(t)
	e := &env{t: t, cfg: cfg, start: start, deadline: start.Add(cfg.budget - reportReserve), loadStart: loadavg()}
	root := t.TempDir()
	e.root = root
	defer func() {
		if left := sweepMounts(root); len(left) > 0 {
			t.Errorf("mounts left behind and detached: %v", left)
		}
	}()

	bin, err := harness.BuildBinary(root)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := harness.StartServer(filepath.Join(root, "s3data"))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	e.server = harness.Client(srv.Endpoint)
	e.dataDir = srv.DataDir
	px, err := proxy.Start(srv.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	defer px.Close()
	e.px = px
	e.discover(bin)
	e.seed()
	px.SetLatency(latency)

	works := cfg.workloads
	e.results = NewResults(works, e.toolNames())
	for _, w := range works {
		for _, tr := range e.tools {
			if tr.only != nil && !tr.only[w.ID] {
				e.results.Add(Result{Tool: tr.name, Work: w.ID, Status: NotByDesign, Err: tr.onlyWhy})
				continue
			}
			e.runRow(w, tr)
		}
	}
	e.report(time.Since(start))
	for _, f := range e.results.Failures() {
		t.Errorf("FAILED: %s, %s: %s", f.Tool, f.Work, f.Err)
	}
}

const (
	latency = 20 * time.Millisecond
	mib     = 1 << 20
	gib     = 1 << 30
	// reportReserve is kept from the budget for unmounting the last row
	// and writing the report.
	reportReserve = 20 * time.Second
	smallSize     = 100 << 10
	ttfbObjects   = 12
	ttfbSize      = 4 * mib
	randThreads   = 4
	randPerThread = 160
	randSize      = 256 << 10
)

// workloads returns the rows in order, for the sizes of objects and of
// the large directory, with their time caps.
func workloads(size, parSize int64, many int) ([]Workload, map[string]time.Duration) {
	sz := func(n int64) string {
		if n%gib == 0 {
			return fmt.Sprintf("%d GiB", n/gib)
		}
		return fmt.Sprintf("%d MiB", n/mib)
	}
	entries := fmt.Sprintf("%d,%03d", many/1000, many%1000)
	if many < 1000 {
		entries = fmt.Sprint(many)
	}
	ws := []Workload{
		{ID: "seq", Title: "1. cold sequential read of " + sz(size) + ", 1 MiB reads", Short: "1 seq read", Unit: "MB/s", Higher: true},
		{ID: "par4", Title: "2. four readers of " + sz(parSize) + " each, aggregate", Short: "2 4 readers", Unit: "MB/s", Higher: true},
		{ID: "rand", Title: "3. random 256 KiB preads, 4 threads x 160, fixed seed", Short: "3 random", Unit: "MB/s", Higher: true},
		{ID: "ttfb", Title: "4. time to first byte: open + read 128 KiB, median of 12 objects", Short: "4 first byte", Unit: "ms"},
		{ID: "ls2k", Title: "5a. ls -l of a directory of 2,000 entries", Short: "5a ls 2k", Unit: "s"},
		{ID: "ls100k", Title: "5b. ls -l of a directory of " + entries + " entries", Short: "5b ls large", Unit: "s"},
		{ID: "small", Title: "6. 2,000 files of 100 KiB read whole in listing order", Short: "6 small files", Unit: "s"},
		{ID: "write", Title: "7. sequential write of " + sz(size) + " (dd bs=1M) until stored", Short: "7 write", Unit: "MB/s", Higher: true},
		{ID: "cpr", Title: "8. cp -r of 2,000 files of 100 KiB until stored", Short: "8 cp -r", Unit: "s"},
	}
	caps := map[string]time.Duration{
		"seq": 45 * time.Second, "par4": 60 * time.Second, "rand": 45 * time.Second, "ttfb": 30 * time.Second,
		"ls2k": 45 * time.Second, "ls100k": 80 * time.Second, "small": 60 * time.Second,
		"write": 60 * time.Second, "cpr": 90 * time.Second,
	}
	return ws, caps
}

type config struct {
	workloads []Workload
	caps      map[string]time.Duration
	tools     map[string]bool // nil: all
	size      int64           // rows 1, 3 and 7
	parSize   int64           // row 2, per reader
	many      int             // row 5b
	budget    time.Duration
	out       string // "" : the published files
	full      bool   // the published run's settings
}

func loadConfig(t *testing.T) config {
	c := config{size: gib, many: 100_000, budget: 14 * time.Minute, full: true}
	size := func(name string, def int64) int64 {
		v := os.Getenv(name)
		if v == "" {
			return def
		}
		c.full = false
		n, err := parseSize(v)
		if err != nil || n < 64*mib || n%mib != 0 {
			t.Fatalf("%s=%q: want a whole number of MiB, at least 64MiB", name, v)
		}
		return n
	}
	c.size = size("COMPARE_SIZE", gib)
	c.parSize = size("COMPARE_PAR_SIZE", c.size)
	if c.parSize > c.size {
		t.Fatalf("COMPARE_PAR_SIZE is larger than COMPARE_SIZE")
	}
	if v := os.Getenv("COMPARE_MANY"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("COMPARE_MANY=%q", v)
		}
		c.many, c.full = n, false
	}
	ws, caps := workloads(c.size, c.parSize, c.many)
	c.workloads, c.caps = ws, caps
	if v := os.Getenv("COMPARE_WORKLOADS"); v != "" {
		want := map[string]bool{}
		for _, id := range strings.Split(v, ",") {
			want[strings.TrimSpace(id)] = true
		}
		var sel []Workload
		for _, w := range ws {
			if want[w.ID] {
				sel = append(sel, w)
				delete(want, w.ID)
			}
		}
		if len(want) > 0 {
			t.Fatalf("COMPARE_WORKLOADS: unknown %v", want)
		}
		c.workloads, c.full = sel, false
	}
	if v := os.Getenv("COMPARE_TOOLS"); v != "" {
		c.tools = map[string]bool{}
		for _, n := range strings.Split(v, ",") {
			c.tools[strings.TrimSpace(n)] = true
		}
		c.full = false
	}
	if v := os.Getenv("COMPARE_BUDGET"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("COMPARE_BUDGET=%q: %v", v, err)
		}
		c.budget = d
	}
	c.out = os.Getenv("COMPARE_OUT")
	return c
}

func parseSize(s string) (int64, error) {
	mult := int64(1)
	for suf, m := range map[string]int64{"GiB": gib, "MiB": mib} {
		if strings.HasSuffix(s, suf) {
			s, mult = strings.TrimSuffix(s, suf), m
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n * mult, err
}

// env is one comparison run.
type env struct {
	t        *testing.T
	cfg      config
	start    time.Time
	deadline time.Time // rows that would start after it are not run
	root     string
	dataDir  string     // versitygw's posix backend's directory
	server   *s3.Client // straight to versitygw: seeding and checking, never timed
	px       *proxy.Proxy
	tools    []toolRun
	skipped  map[string]string
	results  *Results
	bucket   string
	base     []byte // the large objects' data; object i has byte 0 = i
	sums     map[string][32]byte
	srcBig   string // a local file of cfg.size bytes, row 7's source
	srcSmall string // a local directory of 2,000 files, row 8's source
	seeding  string
	mounts   int
	// loadStart is /proc/loadavg when the run began: other work on the
	// machine shares its cores.
	loadStart string
}

// toolRun is a tool that runs in this comparison.
type toolRun struct {
	name      string
	key       string // name in the keys rows 7 and 8 write: no spaces
	exe       string
	peer      *Peer           // nil for bucketfs and its variant
	writeBack bool            // bucketfs with --write-back --cache-dir
	only      map[string]bool // the rows it runs; nil: every row
	onlyWhy   string          // why it runs no other row
	version   string
	cmdline   string
}

// SelfWriteBack is bucketfs with the flags it recommends for writers that
// must not wait on the network, the writes' column of its own.
const SelfWriteBack = Self + " --write-back"

func (e *env) toolNames() []string {
	names := []string{}
	for _, tr := range e.tools {
		names = append(names, tr.name)
	}
	return names
}

func (e *env) want(name string) bool { return e.cfg.tools == nil || e.cfg.tools[name] }

// discover finds the tools and their versions.
func (e *env) discover(bin string) {
	e.skipped = map[string]string{}
	e.bucket = "compare"
	if e.want(Self) {
		rev, _ := exec.Command("git", "describe", "--always", "--dirty").Output()
		cfg := e.mountConfig(Self, "DIR")
		cfg.Endpoint = "http://127.0.0.1:PORT"
		e.tools = append(e.tools, toolRun{name: Self, key: Self, exe: bin, version: "built from this tree, " + strings.TrimSpace(string(rev)),
			cmdline: CommandLine(nil, "bucketfs", bucketfsArgs(cfg, false))})
	}
	if e.want(SelfWriteBack) {
		rev, _ := exec.Command("git", "describe", "--always", "--dirty").Output()
		cfg := e.mountConfig(SelfWriteBack, "DIR")
		cfg.Endpoint, cfg.CacheDir = "http://127.0.0.1:PORT", "CACHE_DIR"
		e.tools = append(e.tools, toolRun{name: SelfWriteBack, key: "bucketfs-write-back", exe: bin, writeBack: true,
			only:    map[string]bool{"write": true, "cpr": true},
			onlyWhy: "this column runs only the write rows (7 and 8), where --write-back changes when close returns; its reads are the same as bucketfs's (the bucketfs column; --cache-dir would also keep a copy of each block read on local disk)",
			version: "built from this tree, " + strings.TrimSpace(string(rev)),
			cmdline: CommandLine(nil, "bucketfs", bucketfsArgs(cfg, true))})
	}
	for _, p := range Peers() {
		if !e.want(p.Name) {
			continue
		}
		path, why := Discover(p, os.Getenv, LookPath)
		if why != "" {
			e.skipped[p.Name] = why
			continue
		}
		out, _ := exec.Command(path, p.Version).CombinedOutput()
		cfg := e.mountConfig(p.Name, "DIR")
		cfg.Endpoint = "http://127.0.0.1:PORT"
		cfg.CacheDir, cfg.PasswdFile = "CACHE_DIR", "PASSWD_FILE"
		cfg.AccessKey, cfg.SecretKey = "...", "..."
		e.tools = append(e.tools, toolRun{name: p.Name, key: p.Name, exe: path, peer: &p, version: VersionLine(p.Name, string(out)),
			cmdline: CommandLine(p.Env(cfg), p.Exe, p.Args(cfg))})
	}
}

// bucketfsArgs is bucketfs's mount command: its defaults, or with
// writeBack the flags it recommends for writers that must not wait on the
// network (close returns once the file and a journal record are fsynced in
// the cache directory; the uploads go on in the background).
func bucketfsArgs(c MountConfig, writeBack bool) []string {
	args := []string{"mount", "--endpoint", c.Endpoint, "--path-style", "--log-level", "info"}
	if writeBack {
		args = append(args, "--write-back", "--cache-dir", c.CacheDir)
	}
	return append(args, c.Bucket, c.Dir)
}

func (e *env) mountConfig(tool, dir string) MountConfig {
	return MountConfig{Endpoint: e.px.URL, Region: "us-east-1", Bucket: e.bucket, Dir: dir,
		AccessKey: harness.AccessKey, SecretKey: harness.SecretKey}
}

// mount mounts tr afresh on a new directory, with a new cache directory.
func (e *env) mount(tr toolRun) (*mounted, error) {
	e.mounts++
	base := filepath.Join(e.root, fmt.Sprintf("m%03d-%s", e.mounts, tr.key))
	dir, cache := filepath.Join(base, "mnt"), filepath.Join(base, "cache")
	for _, d := range []string{dir, cache} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	c := e.mountConfig(tr.name, dir)
	c.CacheDir = cache
	if tr.peer == nil {
		return startMount(tr.exe, bucketfsArgs(c, tr.writeBack), nil, dir)
	}
	c.PasswdFile = filepath.Join(base, "passwd")
	if err := os.WriteFile(c.PasswdFile, []byte(c.AccessKey+":"+c.SecretKey+"\n"), 0o600); err != nil {
		return nil, err
	}
	return startMount(tr.exe, tr.peer.Args(c), tr.peer.Env(c), dir)
}

// seed puts the data in place, straight into the server (around the
// proxy), in parallel.
func (e *env) seed() {
	t := e.t
	t0 := time.Now()
	ctx := context.Background()
	if err := harness.CreateBucket(ctx, e.server, e.bucket); err != nil {
		t.Fatal(err)
	}
	e.base = make([]byte, e.cfg.size)
	rng := rand.NewChaCha8([32]byte{'c', 'o', 'm', 'p', 'a', 'r', 'e'})
	rng.Read(e.base)
	e.sums = map[string][32]byte{}
	type obj struct {
		key  string
		data io.ReadSeeker
	}
	var objs []obj
	var sumsWG sync.WaitGroup
	bigSums := make([][32]byte, 4)
	for i := range 4 {
		key := fmt.Sprintf("big-%d.bin", i)
		objs = append(objs, obj{key, e.bigReader(i)})
		sumsWG.Add(1)
		go func() {
			defer sumsWG.Done()
			h := sha256.New()
			io.Copy(h, e.bigReader(i))
			bigSums[i] = [32]byte(h.Sum(nil))
		}()
	}
	for i := range ttfbObjects {
		key := fmt.Sprintf("ttfb/obj-%02d.bin", i)
		objs = append(objs, obj{key, bytes.NewReader(e.ttfbData(i))})
		e.sums[key] = sha256.Sum256(e.ttfbData(i))
	}
	for i := range 2000 {
		objs = append(objs, obj{smallKey(i), bytes.NewReader(e.smallData(i))})
		e.sums[smallKey(i)] = sha256.Sum256(e.smallData(i))
	}
	var mu sync.Mutex
	var firstErr error
	put := func(key string, data io.ReadSeeker) {
		// UNSIGNED-PAYLOAD: the SDK would otherwise hash every body once
		// more to sign it (plain HTTP), seconds of CPU for the large ones.
		_, err := e.server.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(e.bucket), Key: aws.String(key), Body: data},
			s3.WithAPIOptions(v4.SwapComputePayloadSHA256ForUnsignedPayloadMiddleware))
		if err != nil {
			mu.Lock()
			if firstErr == nil {
				firstErr = fmt.Errorf("put %s: %w", key, err)
			}
			mu.Unlock()
		}
	}
	work := make(chan obj)
	var wg sync.WaitGroup
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for o := range work {
				put(o.key, o.data)
			}
		}()
	}
	for _, o := range objs {
		work <- o
	}
	close(work)
	wg.Wait()
	if firstErr != nil {
		t.Fatal(firstErr)
	}
	sumsWG.Wait()
	for i, sum := range bigSums {
		e.sums[fmt.Sprintf("big-%d.bin", i)] = sum
	}
	dataTook := time.Since(t0)
	t1 := time.Now()
	if err := e.seedEmpty("many/", e.cfg.many); err != nil {
		t.Fatal(err)
	}
	manyTook := time.Since(t1)

	// Local sources of the write rows.
	e.srcBig = filepath.Join(e.root, "src-big.bin")
	f, err := os.Create(e.srcBig)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(f, h), e.bigReader(9)); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	e.sums["src-big"] = [32]byte(h.Sum(nil))
	e.srcSmall = filepath.Join(e.root, "src-small")
	os.MkdirAll(e.srcSmall, 0o755)
	for i := range 2000 {
		if err := os.WriteFile(filepath.Join(e.srcSmall, fmt.Sprintf("f-%04d.bin", i)), e.writeSmallData(i), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	unix.Sync()
	e.seeding = fmt.Sprintf("Seeding: the data objects were PUT straight to the server (around the proxy), 64 at a time, in %s. The %d empty objects of the large directory were made in %s the way versitygw's posix backend stores them (see seedEmpty), since PUTting them takes about 90 s here; every tool's `ls -l` row checks that all of them are listed, with size 0.",
		dataTook.Round(time.Second), e.cfg.many, manyTook.Round(100*time.Millisecond))
	t.Log(e.seeding)
}

// seedEmpty makes n empty objects prefix+entry-NNNNNN.txt. The first is PUT
// through the S3 API; the others are made as versitygw's posix backend
// stores an object, a file under DATA/BUCKET/KEY, with the extended
// attributes the server wrote for the first (ETag, content type,
// checksums: the same for every empty object), 16 files at a time. A few
// are then read back through the API.
func (e *env) seedEmpty(prefix string, n int) error {
	ctx := context.Background()
	key := func(i int) string { return fmt.Sprintf("%sentry-%06d.txt", prefix, i) }
	if _, err := e.server.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(e.bucket), Key: aws.String(key(0)), Body: bytes.NewReader(nil)}); err != nil {
		return err
	}
	path := func(i int) string { return filepath.Join(e.dataDir, e.bucket, filepath.FromSlash(key(i))) }
	attrs := map[string][]byte{}
	buf := make([]byte, 64<<10)
	sz, err := unix.Listxattr(path(0), buf)
	if err != nil {
		return fmt.Errorf("the template object's attributes: %w", err)
	}
	for _, name := range strings.Split(strings.TrimRight(string(buf[:sz]), "\x00"), "\x00") {
		v := make([]byte, 64<<10)
		vn, err := unix.Getxattr(path(0), name, v)
		if err != nil {
			return fmt.Errorf("attribute %s: %w", name, err)
		}
		attrs[name] = v[:vn]
	}
	if len(attrs) == 0 {
		return fmt.Errorf("%s has no extended attributes: not the posix backend's layout", path(0))
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 1 + w; i < n; i += 16 {
				f, err := os.OpenFile(path(i), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
				if err != nil {
					errs <- err
					return
				}
				for name, v := range attrs {
					if err := unix.Fsetxattr(int(f.Fd()), name, v, 0); err != nil {
						f.Close()
						errs <- err
						return
					}
				}
				f.Close()
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	for _, i := range []int{0, n / 2, n - 1} {
		h, err := e.server.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(e.bucket), Key: aws.String(key(i))})
		if err != nil {
			return fmt.Errorf("HEAD %s after seeding: %w", key(i), err)
		}
		if aws.ToInt64(h.ContentLength) != 0 || aws.ToString(h.ETag) != `"d41d8cd98f00b204e9800998ecf8427e"` {
			return fmt.Errorf("HEAD %s after seeding: size %d, ETag %s", key(i), aws.ToInt64(h.ContentLength), aws.ToString(h.ETag))
		}
	}
	return nil
}

// bigReader reads large object i: the base data with byte 0 = i.
func (e *env) bigReader(i int) io.ReadSeeker {
	return &firstByte{first: byte(i), r: bytes.NewReader(e.base)}
}

// firstByte reads r with its first byte replaced.
type firstByte struct {
	first byte
	r     *bytes.Reader
}

func (f *firstByte) Read(p []byte) (int, error) {
	pos := f.r.Size() - int64(f.r.Len())
	n, err := f.r.Read(p)
	if pos == 0 && n > 0 {
		p[0] = f.first
	}
	return n, err
}

func (f *firstByte) Seek(off int64, whence int) (int64, error) { return f.r.Seek(off, whence) }

func (e *env) ttfbData(i int) []byte { return e.base[i*ttfbSize+1 : (i+1)*ttfbSize+1] }

// expectBig returns bytes [off, off+n) of large object i.
func (e *env) expectBig(i int, off, n int64) []byte {
	b := e.base[off : off+n]
	if off == 0 {
		b = bytes.Clone(b)
		b[0] = byte(i)
	}
	return b
}

func smallKey(i int) string { return fmt.Sprintf("small/f-%04d.bin", i) }

func (e *env) smallData(i int) []byte {
	off := (int64(i) * smallSize * 3) % (e.cfg.size - smallSize)
	return e.base[off : off+smallSize]
}

func (e *env) writeSmallData(i int) []byte {
	off := (int64(i)*smallSize*5 + 7) % (e.cfg.size - smallSize)
	return e.base[off : off+smallSize]
}

// machine describes this machine.
func machine() string {
	cpu := "unknown CPU"
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "model name") {
			if _, v, ok := strings.Cut(line, ":"); ok {
				cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	var u unix.Utsname
	unix.Uname(&u)
	var si unix.Sysinfo_t
	unix.Sysinfo(&si)
	return fmt.Sprintf("%d cores (%s), %d GiB RAM, kernel %s", runtime.NumCPU(), cpu,
		(uint64(si.Totalram)*uint64(si.Unit)+gib/2)/gib, unix.ByteSliceToString(u.Release[:]))
}

// loadavg returns the 1, 5 and 15 minute load averages.
func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], ", ")
}

// dropCaches writes dirty pages back and drops the kernel's page cache.
func dropCaches() error {
	unix.Sync()
	return os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0o200)
}
