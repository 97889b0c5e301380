//go:build bench

package integration

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/bucketfs/bucketfs/integration/harness"
	"github.com/bucketfs/bucketfs/integration/proxy"
	"golang.org/x/sys/unix"
)

// The benchmark measures bucketfs through a real mount and, in the same
// run, "the limit": the same bytes fetched straight from the same proxy by
// a Go client doing parallel ranged GETs with the best part size and
// concurrency it finds (for writes, bench_write_test.go, uploaded the same
// way). The proxy adds a first-byte latency like a remote object store's.
// Results go to integration/BENCHMARKS.md.

const (
	benchLatency = 20 * time.Millisecond
	gib          = 1 << 30
	mib          = 1 << 20
)

type benchEnv struct {
	t      *testing.T
	px     *proxy.Proxy
	bucket string
	direct *s3.Client // through the proxy, for the limit
	rows   []benchRow
	notes  []string
	w1     float64 // workload 1's rate, the baseline of workload 6
	// only holds the workloads BENCH_ONLY selects (nil: all of them).
	only map[string]bool
	// profiles, when set (BENCH_PROFILE), is a directory that receives a
	// CPU profile of the daemon of workloads 1, 2 and 8a.
	profiles string
}

// benchOnly returns the workloads BENCH_ONLY selects ("1,2,8a"), or nil
// when it is not set: all of them.
func benchOnly() map[string]bool {
	v := os.Getenv("BENCH_ONLY")
	if v == "" {
		return nil
	}
	only := map[string]bool{}
	for _, w := range strings.Split(v, ",") {
		only[strings.TrimSpace(w)] = true
	}
	return only
}

// runs reports whether workload w (as numbered in BENCHMARKS.md: "1",
// "8a", "13b"...) is to run. BENCH_ONLY=1,2,8a runs only those; any
// selection leaves BENCHMARKS.md as it was.
func (e *benchEnv) runs(w string) bool { return e.only == nil || e.only[w] }

// profileArgs returns the flags that make a daemon write a CPU profile
// named name into BENCH_PROFILE's directory, if one is set.
func (e *benchEnv) profileArgs(name string) []string {
	if e.profiles == "" {
		return nil
	}
	return []string{"--cpu-profile", filepath.Join(e.profiles, name+".pprof")}
}

// cpuSnap is where the machine's CPU time went so far: the daemon (pid 0:
// none), the S3 server, this process (the proxy, the reader or the limit
// client) and the machine as a whole.
type cpuSnap struct {
	daemon, server, self time.Duration
	machine              cpuTimes
}

func (e *benchEnv) cpuNow(daemon int) cpuSnap {
	var c cpuSnap
	if daemon != 0 {
		c.daemon = procCPU(e.t, daemon)
	}
	c.server, c.self, c.machine = procCPU(e.t, serverPid(e.t)), procCPU(e.t, os.Getpid()), machineCPU(e.t)
	return c
}

// split describes the CPU used since c0 for n bytes read.
func (c cpuSnap) split(c0 cpuSnap, n int64, reader string) string {
	per := func(d time.Duration) float64 { return d.Seconds() / (float64(n) / gib) }
	m := c.machine.sub(c0.machine)
	s := ""
	if c.daemon != 0 {
		s = fmt.Sprintf("daemon %.2f, ", per(c.daemon-c0.daemon))
	}
	return s + fmt.Sprintf("server %.2f, proxy and %s %.2f CPU-s/GiB; machine %.0f%% busy",
		per(c.server-c0.server), reader, per(c.self-c0.self), m.percent())
}

// rest is the CPU time the machine spent since c0 outside the daemon, the
// server and this process: the kernel's threads (writeback, disk
// completions) and whatever else runs.
func (c cpuSnap) rest(c0 cpuSnap) time.Duration {
	busy := time.Duration(c.machine.sub(c0.machine).busy) * time.Second / 100 // USER_HZ
	return busy - (c.daemon - c0.daemon) - (c.server - c0.server) - (c.self - c0.self)
}

// cpuPerGiB formats a daemon's CPU time for n bytes read.
func cpuPerGiB(cpu time.Duration, n int64) string {
	return fmt.Sprintf("daemon %.2f CPU-s/GiB", cpu.Seconds()/(float64(n)/gib))
}

type benchRow struct {
	workload, bucketfs, limit, ratio, note string
}

func (e *benchEnv) row(w, b, l, r, note string) {
	e.rows = append(e.rows, benchRow{w, b, l, r, note})
	e.t.Logf("%-44s bucketfs %-14s limit %-14s ratio %-6s %s", w, b, l, r, note)
}

func mbps(n int64, d time.Duration) float64 { return float64(n) / d.Seconds() / 1e6 }

func fmtMBps(v float64) string { return fmt.Sprintf("%.0f MB/s", v) }

func fmtMs(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/1e6) }

// TestBench runs every workload of `make bench`.
func TestBench(t *testing.T) {
	px, err := proxy.Start(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	defer px.Close()
	px.SetLatency(benchLatency)
	e := &benchEnv{t: t, px: px, bucket: "bench", direct: harness.Client(px.URL), profiles: os.Getenv("BENCH_PROFILE")}
	e.only = benchOnly()
	if err := harness.CreateBucket(context.Background(), client, e.bucket); err != nil {
		t.Fatal(err)
	}
	// Each part can run alone (-run '^TestBench$/Write'); only a run in
	// which both went to their end writes BENCHMARKS.md.
	var done int
	t.Run("Read", func(t *testing.T) { e.t = t; e.reads(); e.smallFilesBench(); done++ })
	t.Run("Write", func(t *testing.T) { e.t = t; e.writes(); done++ })
	e.t = t
	e.write(done == 2 && e.only == nil)
}

// reads seeds the bucket and runs workloads 1-9.
func (e *benchEnv) reads() {
	t := e.t
	if !slices.ContainsFunc([]string{"1", "2", "3", "4", "5", "6", "7", "8a", "8b", "8c", "8d", "9", "9b", "sweep"}, e.runs) {
		return
	}
	// Seed: four 1 GiB objects, a 192 MiB object, a 256 MiB "set", and
	// small objects for time to first byte. Uploads go around the proxy.
	// Under BENCH_ONLY, only the objects the chosen workloads read.
	some := func(ws ...string) bool { return slices.ContainsFunc(ws, e.runs) }
	big := randomBytes(7, gib)
	for i := range 4 {
		big[0] = byte(i) // four different objects
		if some("1", "2", "6", "7", "8a", "8b", "8c", "8d", "sweep") || (some("5") && (i == 1 || i == 2)) {
			mustPut(t, e.bucket, fmt.Sprintf("big-%d.bin", i), big)
		}
	}
	if some("6") {
		mustPut(t, e.bucket, "reread.bin", big[:192*mib])
	}
	if some("4") {
		mustPut(t, e.bucket, "set.mp3", big[:256*mib])
	}
	for i := range 12 {
		if some("3") {
			mustPut(t, e.bucket, fmt.Sprintf("ttfb/obj-%02d.bin", i), big[i*mib:i*mib+4*mib])
		}
	}
	// Workload 9's dataset: 64 files of 8 MiB, twice its 256 MiB budget.
	for i := range 64 {
		if some("9", "9b") {
			mustPut(t, e.bucket, fmt.Sprintf("dataset/shard-%02d.bin", i), big[i*8*mib:(i+1)*8*mib])
		}
	}
	big = nil
	runtime.GC()
	// The server wrote ~5.6 GiB just now: let the kernel write it back
	// before measuring, not during workload 1.
	unix.Sync()

	if some("1", "2", "6") {
		part, conc := e.bestLimitConfig()
		e.notes = append(e.notes, fmt.Sprintf("Limit client: parallel ranged GETs of %d MiB, %d at a time (best of a sweep over part sizes 4-16 MiB and 4-16 GETs).", part/mib, conc))
		e.sequential(part, conc)
	}
	for _, w := range []struct {
		ids []string
		run func()
	}{
		{[]string{"3"}, e.timeToFirstByte},
		{[]string{"4"}, e.playback},
		{[]string{"5"}, e.random},
		{[]string{"6"}, e.reread},
		{[]string{"7"}, e.memory},
		{[]string{"8a", "8b", "8c", "8d"}, e.diskTier},
		{[]string{"9", "9b"}, e.epochs},
		{[]string{"sweep"}, e.blockSizeSweep},
	} {
		if slices.ContainsFunc(w.ids, e.runs) {
			w.run()
		}
	}
}

func mustPut(t *testing.T, bucket, key string, data []byte) {
	t.Helper()
	if err := harness.Put(context.Background(), client, bucket, key, data); err != nil {
		t.Fatal(err)
	}
}

// benchMount mounts the bench bucket through the proxy with extra flags.
func (e *benchEnv) benchMount(extra ...string) *harness.Mount {
	e.t.Helper()
	dir := e.t.TempDir()
	args := append([]string{"--endpoint", e.px.URL, "--path-style", "--log-level", "info"}, extra...)
	args = append(args, e.bucket)
	m, err := harness.StartMount(bin, harness.Env(e.px.URL), dir, args...)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { m.Stop() })
	return m
}

// readFile reads path sequentially with 1 MiB reads (like dd bs=1M).
func readFile(path string, limit int64) (int64, time.Duration, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	start := time.Now()
	var r io.Reader = f
	if limit > 0 {
		r = io.LimitReader(f, limit)
	}
	n, err := copy1M(r)
	return n, time.Since(start), err
}

// copy1M drains r with 1 MiB read calls. (io.Copy to io.Discard would use
// io.Discard's ReadFrom and its 8 KiB reads.)
func copy1M(r io.Reader) (int64, error) {
	return io.CopyBuffer(struct{ io.Writer }{io.Discard}, struct{ io.Reader }{r}, make([]byte, mib))
}

// limitFetch reads total bytes of each key straight from the proxy with
// parallel ranged GETs of part bytes, conc in flight overall.
func (e *benchEnv) limitFetch(keys []string, total, part int64, conc int) (int64, time.Duration) {
	type job struct {
		key string
		off int64
	}
	jobs := make(chan job, 1024)
	go func() {
		for off := int64(0); off < total; off += part {
			for _, k := range keys {
				jobs <- job{k, off}
			}
		}
		close(jobs)
	}()
	var got atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, part)
			for j := range jobs {
				n := min(part, total-j.off)
				out, err := e.direct.GetObject(context.Background(), &s3.GetObjectInput{
					Bucket: aws.String(e.bucket), Key: aws.String(j.key),
					Range: aws.String(fmt.Sprintf("bytes=%d-%d", j.off, j.off+n-1)),
				})
				if err != nil {
					e.t.Error(err)
					return
				}
				k, _ := io.ReadFull(out.Body, buf[:n])
				out.Body.Close()
				got.Add(int64(k))
			}
		}()
	}
	wg.Wait()
	return got.Load(), time.Since(start)
}

// bestLimitConfig sweeps part size and concurrency on 256 MiB of one object.
func (e *benchEnv) bestLimitConfig() (int64, int) {
	best, bestPart, bestConc := 0.0, int64(8*mib), 8
	for _, part := range []int64{4 * mib, 8 * mib, 16 * mib} {
		for _, conc := range []int{4, 8, 16} {
			n, d := e.limitFetch([]string{"big-3.bin"}, 256*mib, part, conc)
			if r := mbps(n, d); r > best {
				best, bestPart, bestConc = r, part, conc
			}
		}
	}
	return bestPart, bestConc
}

// sequential runs workloads 1 and 2.
func (e *benchEnv) sequential(part int64, conc int) {
	if e.runs("1") || e.runs("6") {
		e.sequential1(part, conc)
	}
	if e.runs("2") {
		e.sequential4(part, conc)
	}
}

// sequential1 runs workload 1.
func (e *benchEnv) sequential1(part int64, conc int) {
	m := e.benchMount(e.profileArgs("w1")...)
	e.px.Reset()
	cpu0, snap0 := procCPU(e.t, m.Pid()), e.cpuNow(m.Pid())
	n, d, err := readFile(filepath.Join(m.Dir, "big-0.bin"), 0)
	if err != nil || n != gib {
		e.t.Fatalf("workload 1: %d bytes, %v", n, err)
	}
	cpu, split := procCPU(e.t, m.Pid())-cpu0, e.cpuNow(m.Pid()).split(snap0, n, "reader")
	e.notes = append(e.notes, fmt.Sprintf("CPU: during workload 1 the daemon alone used %.2f CPU-seconds in %.2f s of wall time (%.0f%% of the machine's %d cores); the server, the proxy and the reader share the rest. The limit client pays neither the FUSE transfer nor the daemon's copy from the socket, so on this machine the ratio of workloads 1-2 measures CPU, not waiting.",
		cpu.Seconds(), d.Seconds(), 100*cpu.Seconds()/d.Seconds()/float64(runtime.NumCPU()), runtime.NumCPU()))
	fetched := e.px.Stats().GetBytes
	w1 := mbps(n, d)
	lsnap0 := e.cpuNow(0)
	ln, ld := e.limitFetch([]string{"big-0.bin"}, gib, part, conc)
	lsplit := e.cpuNow(0).split(lsnap0, ln, "limit client")
	l1 := mbps(ln, ld)
	e.row("1. sequential 1 GiB, 1 reader, cold", fmtMBps(w1), fmtMBps(l1), fmt.Sprintf("%.2f", w1/l1),
		fmt.Sprintf("amplification %.3f; %s (%s; limit run: %s)", float64(fetched)/float64(n), cpuPerGiB(cpu, n), split, lsplit))
	e.w1 = w1

	// What the kernel's page cache costs: the same read of another
	// object, cold, by a reader opening it with O_DIRECT, so FUSE copies
	// each reply into the reader's own (reused) buffer instead of into
	// new page cache pages. And what writing fresh memory costs on this
	// machine at all, against copying into memory already written.
	c0 := procCPU(e.t, m.Pid())
	dn, dd, err := readFileDirect(filepath.Join(m.Dir, "big-1.bin"))
	if err != nil || dn != gib {
		e.t.Fatalf("workload 1 with O_DIRECT: %d bytes, %v", dn, err)
	}
	dcpu := procCPU(e.t, m.Pid()) - c0
	fresh, warm := touchCost(256 * mib)
	e.notes = append(e.notes, fmt.Sprintf("Page cache: workload 1's read of another object by a reader opening it with O_DIRECT (no page cache; FUSE copies each reply into the reader's buffer) ran at %s, %s, against %s with the page cache. On this machine writing memory for the first time costs %.2f CPU-s/GiB, copying into memory already written %.2f: every byte read through the page cache lands in a new page, which the daemon's reply to the kernel writes first; the limit client reuses its buffers.",
		fmtMBps(mbps(dn, dd)), cpuPerGiB(dcpu, dn), cpuPerGiB(cpu, n), fresh.Seconds()/(256.0/1024), warm.Seconds()/(256.0/1024)))
	m.Stop()
}

// readFileDirect reads path with O_DIRECT in 1 MiB reads into one aligned
// buffer.
func readFileDirect(path string) (int64, time.Duration, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECT, 0)
	if err != nil {
		return 0, 0, err
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	buf, err := unix.Mmap(-1, 0, mib, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		return 0, 0, err
	}
	defer unix.Munmap(buf)
	start := time.Now()
	var n int64
	for {
		k, err := f.Read(buf)
		n += int64(k)
		if err == io.EOF {
			return n, time.Since(start), nil
		}
		if err != nil {
			return n, time.Since(start), err
		}
	}
}

// touchCost returns the CPU time of copying size bytes into new anonymous
// memory (each page written for the first time) and then again into the
// same memory.
func touchCost(size int) (fresh, warm time.Duration) {
	src := make([]byte, 4*mib)
	dst, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		return 0, 0
	}
	defer unix.Munmap(dst)
	// The thread's CPU time, user and system (page faults).
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cpu := func() time.Duration {
		var ru unix.Rusage
		unix.Getrusage(unix.RUSAGE_THREAD, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	pass := func() time.Duration {
		start := cpu()
		for off := 0; off < size; off += len(src) {
			copy(dst[off:], src)
		}
		return cpu() - start
	}
	return pass(), pass()
}

// sequential4 runs workload 2.
func (e *benchEnv) sequential4(part int64, conc int) {
	m2 := e.benchMount(e.profileArgs("w2")...)
	cpu0, snap0 := procCPU(e.t, m2.Pid()), e.cpuNow(m2.Pid())
	var wg sync.WaitGroup
	var total atomic.Int64
	start := time.Now()
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, _, err := readFile(filepath.Join(m2.Dir, fmt.Sprintf("big-%d.bin", i)), 0)
			if err != nil {
				e.t.Error(err)
			}
			total.Add(n)
		}()
	}
	wg.Wait()
	w2 := mbps(total.Load(), time.Since(start))
	cpu, split := procCPU(e.t, m2.Pid())-cpu0, e.cpuNow(m2.Pid()).split(snap0, total.Load(), "readers")
	keys := []string{"big-0.bin", "big-1.bin", "big-2.bin", "big-3.bin"}
	lsnap0 := e.cpuNow(0)
	ln, ld := e.limitFetch(keys, gib, part, conc*2)
	lsplit := e.cpuNow(0).split(lsnap0, ln, "limit client")
	l2 := mbps(ln, ld)
	e.row("2. sequential 4 x 1 GiB, 4 readers, cold", fmtMBps(w2), fmtMBps(l2), fmt.Sprintf("%.2f", w2/l2),
		fmt.Sprintf("aggregate; goal ≥ 0.7: %s; %s (%s; limit run: %s)", metOrNot(w2/l2 >= 0.7), cpuPerGiB(cpu, total.Load()), split, lsplit))
	m2.Stop()
}

// timeToFirstByte runs workload 3 on listed, uncached files.
func (e *benchEnv) timeToFirstByte() {
	m := e.benchMount()
	if _, err := os.ReadDir(filepath.Join(m.Dir, "ttfb")); err != nil {
		e.t.Fatal(err)
	}
	var fs, rtts []time.Duration
	buf := make([]byte, 128<<10)
	for i := range 12 {
		p := filepath.Join(m.Dir, "ttfb", fmt.Sprintf("obj-%02d.bin", i))
		start := time.Now()
		f, err := os.Open(p)
		if err != nil {
			e.t.Fatal(err)
		}
		if _, err := io.ReadFull(f, buf); err != nil {
			e.t.Fatal(err)
		}
		fs = append(fs, time.Since(start))
		f.Close()

		start = time.Now()
		out, err := e.direct.GetObject(context.Background(), &s3.GetObjectInput{
			Bucket: aws.String(e.bucket), Key: aws.String(fmt.Sprintf("ttfb/obj-%02d.bin", i)), Range: aws.String("bytes=0-131071"),
		})
		if err != nil {
			e.t.Fatal(err)
		}
		io.Copy(io.Discard, out.Body)
		out.Body.Close()
		rtts = append(rtts, time.Since(start))
	}
	b, l := median(fs), median(rtts)
	e.row("3. time to first 128 KiB (open+read), median", fmtMs(b), fmtMs(l), fmt.Sprintf("%.2f", float64(b)/float64(l)),
		fmt.Sprintf("limit = one ranged GET; target <= limit + 5 ms; p90 %s", fmtMs(percentile(fs, 0.9))))
	m.Stop()
}

// playback runs workload 4: a media player streaming an MP3.
func (e *benchEnv) playback() {
	const (
		chunk    = 64 << 10
		speedup  = 100                                                                // 320 kbit/s compressed 100x in time
		interval = time.Duration(chunk * 8 * float64(time.Second) / 320000 / speedup) // ~16 ms
		segment  = 120                                                                // chunks played between seeks
		size     = 256 * mib
	)
	// The daemon logs its side of every read slower than 30 ms (what it
	// waited for): a stall seen here but not there is the machine's.
	m := e.benchMount("--log-slow-reads", "30ms")
	e.px.Reset()
	f, err := os.Open(filepath.Join(m.Dir, "set.mp3"))
	if err != nil {
		e.t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, chunk)
	read := int64(0)
	start := time.Now()
	if _, err := f.ReadAt(buf[:128], size-128); err != nil { // ID3v1 tag
		e.t.Fatal(err)
	}
	read += 128
	rng := rand.New(rand.NewPCG(4, 4))
	positions := []int64{0}
	for range 3 {
		positions = append(positions, rng.Int64N(size-segment*chunk)&^4095)
	}
	var resumes []time.Duration
	var stall time.Duration
	var slow []string
	for si, pos := range positions {
		next := time.Now()
		for c := 0; c < segment; c++ {
			if d := time.Until(next); d > 0 {
				time.Sleep(d)
			}
			t0 := time.Now()
			n, err := f.ReadAt(buf, pos+int64(c*chunk))
			if err != nil || n != chunk {
				e.t.Fatalf("playback read: %d %v", n, err)
			}
			lat := time.Since(t0)
			read += int64(n)
			if c == 0 {
				if si == 0 {
					resumes = append(resumes, time.Since(start))
				} else {
					resumes = append(resumes, lat)
				}
			} else if lat > interval {
				stall += lat - interval
				slow = append(slow, fmt.Sprintf("segment %d chunk %d: %s", si, c, fmtMs(lat)))
			}
			next = next.Add(interval)
		}
	}
	fetched := e.px.Stats().GetBytes
	var rs []string
	for _, r := range resumes[1:] {
		rs = append(rs, fmtMs(r))
	}
	e.row("4. MP3 playback: start (tag read + first chunk)", fmtMs(resumes[0]), "", "", "")
	e.row("4. MP3 playback: resume after seek", strings.Join(rs, ", "), "", "", "")
	st := readStats(e.t, m.Dir)
	e.row("4. MP3 playback: stall time after first block", fmtMs(stall), "", "",
		fmt.Sprintf("%d reads slower than the %.1f ms chunk interval %v; amplification %.2f (read-ahead past the last position counts); %d requests retried, %d downloads resumed; the daemon saw %d reads of 30 ms or more",
			len(slow), float64(interval)/1e6, slow, float64(fetched)/float64(read), st["s3_retries"], st["get_resumes"], st["slow_reads"]))
	for _, line := range strings.Split(m.Log(), "\n") {
		if strings.Contains(line, `msg="slow read"`) {
			e.notes = append(e.notes, "Workload 4, the daemon's side: "+line[strings.Index(line, "msg="):])
		}
	}
	m.Stop()
}

// random runs workload 5: 4 threads of random 256 KiB reads, in
// randomRounds rounds, each on a fresh mount with its own offsets. The
// goal is an amplification (bytes fetched from the store over bytes read)
// of at most randomGoal in every round.
func (e *benchEnv) random() {
	const (
		threads     = 4
		perT        = 160
		rsize       = 256 << 10
		randomGoal  = 1.1
		randomRound = 5
	)
	offsets := func(seed uint64) []int64 {
		r := rand.New(rand.NewPCG(seed, 9))
		out := make([]int64, perT)
		for i := range out {
			out[i] = r.Int64N(gib-rsize) &^ 4095
		}
		return out
	}
	total := int64(threads * perT * rsize)
	var (
		wg    sync.WaitGroup
		took  time.Duration
		amps  []string
		worst float64
		why   []string
	)
	for round := range randomRound {
		m := e.benchMount()
		e.px.Reset()
		start := time.Now()
		for th := range threads {
			wg.Add(1)
			go func() {
				defer wg.Done()
				f, err := os.Open(filepath.Join(m.Dir, "big-1.bin"))
				if err != nil {
					e.t.Error(err)
					return
				}
				defer f.Close()
				buf := make([]byte, rsize)
				for _, off := range offsets(uint64(round*threads + th)) {
					if _, err := f.ReadAt(buf, off); err != nil {
						e.t.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		took += time.Since(start)
		amp := float64(e.px.Stats().GetBytes) / float64(total)
		worst = max(worst, amp)
		amps = append(amps, fmt.Sprintf("%.3f", amp))
		// Where extra bytes came from: the kernel asking for more than
		// was read (FUSE reads), or the daemon fetching more than asked.
		st := readStats(e.t, m.Dir)
		why = append(why, fmt.Sprintf("round %d: kernel asked %.3fx, daemon fetched %.3fx of that, %d streams started, %d blocks read ahead, %d GETs",
			round+1, float64(st["bytes_read"])/float64(total), float64(st["bytes_fetched"])/float64(max(st["bytes_read"], 1)),
			st["streams_started"], st["readahead_blocks"], st["gets"]))
		m.Stop()
	}
	b := mbps(randomRound*total, took)

	start := time.Now()
	for th := range threads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, rsize)
			for _, off := range offsets(uint64(th + 100)) {
				out, err := e.direct.GetObject(context.Background(), &s3.GetObjectInput{
					Bucket: aws.String(e.bucket), Key: aws.String("big-2.bin"),
					Range: aws.String(fmt.Sprintf("bytes=%d-%d", off, off+rsize-1)),
				})
				if err != nil {
					e.t.Error(err)
					return
				}
				io.ReadFull(out.Body, buf)
				out.Body.Close()
			}
		}()
	}
	wg.Wait()
	l := mbps(total, time.Since(start))
	goal := "met"
	if worst > randomGoal {
		goal = "NOT met"
	}
	e.row("5. random 256 KiB reads, 4 threads", fmtMBps(b), fmtMBps(l), fmt.Sprintf("%.2f", b/l),
		fmt.Sprintf("amplification per round (%d rounds, fresh mount each) %s; goal <= %.1f in every round: %s", randomRound, strings.Join(amps, ", "), randomGoal, goal))
	e.notes = append(e.notes, "Workload 5, where fetched bytes came from: "+strings.Join(why, "; ")+".")
}

// reread runs workload 6: a file already in the block cache, with the
// kernel's page cache dropped.
func (e *benchEnv) reread() {
	m := e.benchMount()
	p := filepath.Join(m.Dir, "reread.bin")
	if _, _, err := readFile(p, 0); err != nil {
		e.t.Fatal(err)
	}
	dropCache(e.t, p)
	e.px.Reset()
	n, d, err := readFile(p, 0)
	if err != nil {
		e.t.Fatal(err)
	}
	st := e.px.Stats()
	r := mbps(n, d)
	e.row("6. re-read from block cache (page cache dropped)", fmtMBps(r), fmtMBps(e.w1)+" (w1)", fmt.Sprintf("%.1fx", r/e.w1),
		fmt.Sprintf("192 MiB; %d GETs during the re-read", st.Gets))
	m.Stop()
}

// memory runs workload 7: peak RSS of one daemon over workloads 1, 2 and
// 32 concurrent readers, against the --cache-memory budget.
func (e *benchEnv) memory() {
	const budget = 512 * mib
	m := e.benchMount("--cache-memory", "512MiB")
	// Where the peak came: RSS sampled with the daemon's counters.
	var (
		peakMu sync.Mutex
		phase  = "1 reader"
		peak   int64
		at     string
	)
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stopSampling:
				return
			case <-time.After(50 * time.Millisecond):
			}
			rss := procStatusBytes(e.t, m.Pid(), "VmRSS")
			peakMu.Lock()
			if rss > peak {
				peak = rss
				peakMu.Unlock()
				st := readStats(e.t, m.Dir)
				peakMu.Lock()
				at = fmt.Sprintf("highest RSS sampled %d MiB, with %s: resident blocks %d MiB, read-ahead budget held %d MiB",
					rss/mib, phase, st["cache_resident_bytes"]/mib, st["budget_used_bytes"]/mib)
			}
			peakMu.Unlock()
		}
	}()
	setPhase := func(p string) { peakMu.Lock(); phase = p; peakMu.Unlock() }
	readFile(filepath.Join(m.Dir, "big-0.bin"), 0)
	setPhase("4 readers")
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() { defer wg.Done(); readFile(filepath.Join(m.Dir, fmt.Sprintf("big-%d.bin", i)), 0) }()
	}
	wg.Wait()
	// The kernel still holds those pages: drop them so the 32 readers go
	// through the daemon.
	for i := range 4 {
		dropCache(e.t, filepath.Join(m.Dir, fmt.Sprintf("big-%d.bin", i)))
	}
	setPhase("32 readers")
	start := time.Now()
	var total atomic.Int64
	for r := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f, err := os.Open(filepath.Join(m.Dir, fmt.Sprintf("big-%d.bin", r%4)))
			if err != nil {
				e.t.Error(err)
				return
			}
			defer f.Close()
			off := int64(r/4) * 128 * mib
			n, _ := copy1M(io.NewSectionReader(f, off, 128*mib))
			total.Add(n)
		}()
	}
	wg.Wait()
	agg := mbps(total.Load(), time.Since(start))
	hwm := procStatusBytes(e.t, m.Pid(), "VmHWM")
	close(stopSampling)
	<-sampled
	e.row("7. peak RSS over 1, 4 and 32 readers", fmt.Sprintf("%d MiB", hwm/mib), fmt.Sprintf("%d MiB budget", budget/mib),
		fmt.Sprintf("%.2f", float64(hwm)/float64(budget)),
		fmt.Sprintf("target ≤ budget + 64 MiB: %s; 32 readers ran at %s aggregate; %s", metOrNot(hwm <= budget+64*mib), fmtMBps(agg), at))
	if os.Getenv("BENCH_GCTRACE") != "" {
		for _, l := range strings.Split(m.Log(), "\n") {
			if strings.HasPrefix(l, "gc ") {
				e.t.Log(l)
			}
		}
	}
	stats := readStats(e.t, m.Dir)
	e.notes = append(e.notes, fmt.Sprintf("Daemon counters after workload 7: %d GETs, %d MiB fetched, read-ahead wasted %d MiB, cache evictions %d.",
		stats["gets"], stats["bytes_fetched"]/mib, stats["readahead_wasted_bytes"]/mib, stats["cache_evictions"]))
	m.Stop()
}

// procCPU returns a process's user+system CPU time.
func procCPU(t *testing.T, pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command name, which is in parentheses.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / 100 // USER_HZ
}

// blockSizeSweep reads 512 MiB cold with each block size.
func (e *benchEnv) blockSizeSweep() {
	var parts []string
	for _, bs := range []string{"1MiB", "2MiB", "4MiB", "8MiB", "16MiB"} {
		m := e.benchMount("--block-size", bs)
		n, d, err := readFile(filepath.Join(m.Dir, "big-2.bin"), 512*mib)
		if err != nil {
			e.t.Fatal(err)
		}
		parts = append(parts, fmt.Sprintf("%s: %s", bs, fmtMBps(mbps(n, d))))
		m.Stop()
	}
	e.notes = append(e.notes, "Block size sweep (512 MiB sequential, cold): "+strings.Join(parts, ", ")+".")
}

func median(ds []time.Duration) time.Duration { return percentile(ds, 0.5) }

func percentile(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[int(float64(len(s)-1)*p)]
}

// write prints the table and, when save, saves it with the machine and
// settings.
func (e *benchEnv) write(save bool) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# bucketfs benchmark results\n\n")
	fmt.Fprintf(&b, "Written by `make bench` on %s.\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "- Machine: %d cores (%s), kernel %s, %s\n", runtime.NumCPU(), cpuModel(), kernel(), runtime.Version())
	fmt.Fprintf(&b, "- Server: versitygw %s (posix backend) behind the bench proxy adding %s first-byte latency, no bandwidth cap; all on one machine, sharing its cores\n", harness.VersitygwVersion, benchLatency)
	fmt.Fprintf(&b, "- bucketfs: default flags (--cache-memory 512MiB, --block-size 4MiB, --max-readahead 64MiB, --max-parallel-gets 32; writes: --write-part-size 8MiB, --max-uploads 8, no --write-back) unless a row says otherwise\n\n")
	fmt.Fprintf(&b, "| workload | bucketfs | limit | ratio | notes |\n| --- | --- | --- | --- | --- |\n")
	for _, r := range e.rows {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", r.workload, r.bucketfs, r.limit, r.ratio, r.note)
	}
	b.WriteString("\n")
	for _, n := range e.notes {
		fmt.Fprintf(&b, "- %s\n", n)
	}
	fmt.Print("\n" + b.String())
	if !save {
		e.t.Log("a part of TestBench did not run: BENCHMARKS.md left as it was")
		return
	}
	root, err := harness.ModuleRoot()
	if err != nil {
		e.t.Fatal(err)
	}
	path := filepath.Join(root, "integration", "BENCHMARKS.md")
	// Workload 11 (TestBenchListing) writes its own section: keep it.
	if old, err := os.ReadFile(path); err == nil {
		if i := bytes.Index(old, []byte("\n## Large directories")); i >= 0 {
			b.Write(old[i:])
		}
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		e.t.Fatal(err)
	}
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "model name") {
			if _, v, ok := strings.Cut(line, ":"); ok {
				return strings.TrimSpace(v)
			}
		}
	}
	return "unknown CPU"
}

func kernel() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}
