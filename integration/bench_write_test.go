//go:build bench

package integration

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/bucketfs/bucketfs/integration/proxy"
	"golang.org/x/sys/unix"
)

// The write workloads (12-15), run by TestBench/Write. Like the read
// workloads, each goal is a ratio against a limit measured in the same
// run through the same 20 ms proxy: the limit client is a Go program
// (aws-sdk-go-v2, the same client as the read limit) uploading the same
// bytes in parallel, with the best settings of a small sweep. Sources are
// local files read once before timing, so they come from the page cache.
// Every object and local file a workload makes is removed when it ends.
// BENCH_WRITE_PROFILE=FILE writes a CPU profile of the daemon during
// workload 12.

// writes runs workloads 12-15.
func (e *benchEnv) writes() {
	ids := [][]string{{"12"}, {"13a", "13b"}, {"14a", "14b"}, {"15"}}
	if !slices.ContainsFunc(slices.Concat(ids...), e.runs) {
		return
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		e.notes = append(e.notes, fmt.Sprintf("Load average when the write workloads began (1, 5, 15 min): %s; they share the machine with whatever else runs.", strings.Join(strings.Fields(string(b))[:3], ", ")))
	}
	// Disk use: the least free space on the disk holding the staging
	// files, the sources and the server's data, sampled throughout.
	free := func() int64 {
		var st unix.Statfs_t
		if err := unix.Statfs(os.TempDir(), &st); err != nil {
			return 0
		}
		return int64(st.Bavail) * st.Bsize
	}
	free0 := free()
	var least atomic.Int64
	least.Store(free0)
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			if f := free(); f > 0 && f < least.Load() {
				least.Store(f)
			}
		}
	}()
	start := time.Now()
	for i, w := range []func(){e.seqWrite, e.smallFiles, e.writeMemory, e.pacedWriter} {
		if !slices.ContainsFunc(ids[i], e.runs) {
			continue
		}
		t0 := time.Now()
		w()
		e.t.Logf("workload %d took %s", 12+i, time.Since(t0).Round(time.Second))
	}
	close(stop)
	<-sampled
	e.notes = append(e.notes, fmt.Sprintf("Workloads 12-15 took %s and used at most %.1f GiB more disk than before them (staging files, sources and the server's copies; %.1f GiB more at their end).",
		time.Since(start).Round(time.Second), float64(free0-least.Load())/gib, max(0, float64(free0-free())/gib)))
}

// seqWrite runs workload 12: 1 GiB written with dd through the mount,
// close included, against a parallel multipart upload of the same file.
func (e *benchEnv) seqWrite() {
	const key = "write-seq.bin"
	local := filepath.Join(e.t.TempDir(), "seq-src.bin")
	data := randomBytes(12, gib)
	want := sha256.Sum256(data)
	if err := os.WriteFile(local, data, 0o644); err != nil {
		e.t.Fatal(err)
	}
	data = nil
	defer os.Remove(local)
	unix.Sync()
	readFile(local, 0) // into the page cache

	// The limit's settings: the best part size and concurrency on 256 MiB.
	// The whole file is then written through the mount and uploaded with
	// them back to back, so both see the machine in the same state.
	best, bestPart, bestConc := 0.0, int64(0), 0
	var sweep []string
	for _, part := range []int64{8 * mib, 16 * mib, 32 * mib} {
		for _, conc := range []int{4, 8, 16} {
			r := mbps(256*mib, e.limitUpload("write-limit.bin", local, 256*mib, part, conc))
			sweep = append(sweep, fmt.Sprintf("%d MiB x %d: %.0f", part/mib, conc, r))
			if r > best {
				best, bestPart, bestConc = r, part, conc
			}
		}
	}

	var extra []string
	if p := os.Getenv("BENCH_WRITE_PROFILE"); p != "" {
		extra = append(extra, "--cpu-profile", p)
	}
	m := e.benchMount(extra...)
	e.px.Reset()
	unix.Sync() // each timed run starts with nothing left to write back
	srv := serverPid(e.t)
	cpu0, srv0, self0, busy0 := procCPU(e.t, m.Pid()), procCPU(e.t, srv), procCPU(e.t, os.Getpid()), machineCPU(e.t)
	start := time.Now()
	dd := exec.Command("dd", "if="+local, "of="+filepath.Join(m.Dir, key), "bs=1M", "status=none")
	out, err := dd.CombinedOutput()
	d := time.Since(start)
	if err != nil {
		e.t.Fatalf("workload 12: dd: %v: %s", err, out)
	}
	cpu, busy := procCPU(e.t, m.Pid())-cpu0, machineCPU(e.t).sub(busy0)
	srvCPU, selfCPU := procCPU(e.t, srv)-srv0, procCPU(e.t, os.Getpid())-self0
	ddCPU := dd.ProcessState.UserTime() + dd.ProcessState.SystemTime()
	st := e.px.Stats()
	m.Stop()
	w := mbps(gib, d)

	unix.Sync()
	busyL0, srvL0, selfL0 := machineCPU(e.t), procCPU(e.t, srv), procCPU(e.t, os.Getpid())
	l := mbps(gib, e.limitUpload("write-limit.bin", local, gib, bestPart, bestConc))
	busyL := machineCPU(e.t).sub(busyL0)
	srvL, selfL := procCPU(e.t, srv)-srvL0, procCPU(e.t, os.Getpid())-selfL0
	got := e.objectSHA256(key)
	e.deleteKeys(key)

	verified := "sha256 of the stored object matches"
	if got != want {
		e.t.Errorf("workload 12: the stored object's sha256 is %x, want %x", got, want)
		verified = "**the stored object's sha256 differs from the file's**"
	}
	e.row("12. sequential write 1 GiB (dd bs=1M, close included)", fmtMBps(w), fmtMBps(l), fmt.Sprintf("%.2f", w/l),
		fmt.Sprintf("goal ≥ 0.8: %s; %s; %d PUTs (parts of 8 MiB), uploaded/written %.3f; CPU-seconds for the GiB: daemon %.2f, dd %.2f, proxy %.2f, server %.2f (limit run: client and proxy %.2f, server %.2f); the machine was %.0f%% busy (limit run %.0f%%)",
			metOrNot(w/l >= 0.8), verified, st.Puts, float64(st.PutBytes)/gib, cpu.Seconds(), ddCPU.Seconds(), selfCPU.Seconds(), srvCPU.Seconds(),
			selfL.Seconds(), srvL.Seconds(), busy.percent(), busyL.percent()))
	e.notes = append(e.notes, fmt.Sprintf("Write limit client: a parallel multipart upload of %d MiB parts, %d at a time, from the same local file (best of a sweep on 256 MiB, MB/s: %s).",
		bestPart/mib, bestConc, strings.Join(sweep, ", ")))
}

// smallFiles runs workload 13: 2,000 files of 100 KiB copied in with
// cp -r, against parallel PUTs of the same files.
func (e *benchEnv) smallFiles() {
	const (
		files = 2000
		size  = 100 << 10
	)
	src := filepath.Join(e.t.TempDir(), "small")
	if err := os.Mkdir(src, 0o755); err != nil {
		e.t.Fatal(err)
	}
	data := randomBytes(13, files*size)
	var paths []string
	for i := range files {
		p := filepath.Join(src, fmt.Sprintf("f-%04d.bin", i))
		if err := os.WriteFile(p, data[i*size:(i+1)*size], 0o644); err != nil {
			e.t.Fatal(err)
		}
		paths = append(paths, p)
	}
	defer os.RemoveAll(src)
	unix.Sync()
	for _, p := range paths {
		readFile(p, 0)
	}

	// Default mount: each close waits for its PUT. With --write-back:
	// cp -r, then bucketfs sync until every file is in the store, timed
	// together (so both rows end with the same objects stored).
	copyIn := func(writeBack bool) (time.Duration, proxy.Stats) {
		var extra []string
		if writeBack {
			extra = []string{"--cache-dir", e.t.TempDir(), "--write-back"}
		}
		m := e.benchMount(extra...)
		e.px.Reset()
		start := time.Now()
		out, err := exec.Command("cp", "-r", src, filepath.Join(m.Dir, "small")).CombinedOutput()
		if err == nil && writeBack {
			out, err = exec.Command(bin, "sync", "--timeout", "5m", m.Dir).CombinedOutput()
		}
		d := time.Since(start)
		if err != nil {
			e.t.Fatalf("workload 13: cp -r: %v: %s", err, out)
		}
		st := e.px.Stats()
		m.Stop()
		if n, got := e.countPrefix("small/"); n != files || got != files*size {
			e.t.Errorf("workload 13: the bucket holds %d objects (%d bytes) under small/, want %d (%d bytes)", n, got, files, files*size)
		}
		e.deletePrefix("small/")
		return d, st
	}
	d, st := copyIn(false)
	dwb, stwb := copyIn(true)

	best, bestConc := time.Duration(0), 0
	var sweep []string
	for _, conc := range []int{8, 16, 32} {
		ld := e.limitPuts("small-limit/", paths, conc)
		sweep = append(sweep, fmt.Sprintf("%d: %.2f s", conc, ld.Seconds()))
		if best == 0 || ld < best {
			best, bestConc = ld, conc
		}
		e.deletePrefix("small-limit/")
	}
	ratio := best.Seconds() / d.Seconds()
	perFile := func(n int64) string { return fmt.Sprintf("%.2f", float64(n)/files) }
	e.row("13a. cp -r of 2,000 files of 100 KiB, close waits for each upload", fmt.Sprintf("%.1f s (%.1f ms a file)", d.Seconds(), float64(d)/1e6/files),
		fmt.Sprintf("%.2f s", best.Seconds()), fmt.Sprintf("%.2f", ratio),
		fmt.Sprintf("limit: PUTs of the same files, %d at a time (sweep %s); per file the mount sent %s PUTs, %s HEADs, %s LISTs, %s others; cp copies one file at a time and each close waits for its PUT, a round trip of the store's 20 ms, so this row cannot reach 0.5 (at most about 0.18 here): that is what 13b is for; geesefs publishes 25 s for 6,400 files and s3fs 53 min, neither waiting for the store at close",
			bestConc, strings.Join(sweep, ", "), perFile(st.Puts), perFile(st.Heads), perFile(st.Lists), perFile(st.Others)))
	ratioWB := best.Seconds() / dwb.Seconds()
	e.row("13b. the same with --write-back, until bucketfs sync returns", fmt.Sprintf("%.1f s (%.1f ms a file)", dwb.Seconds(), float64(dwb)/1e6/files),
		fmt.Sprintf("%.2f s", best.Seconds()), fmt.Sprintf("%.2f", ratioWB),
		fmt.Sprintf("goal ≥ 0.5: %s; close returns once the file and its journal record are fsynced on local disk; uploads go in the background, --max-uploads at a time; timed until every object is in the store; per file the mount sent %s PUTs, %s HEADs, %s LISTs, %s others",
			metOrNot(ratioWB >= 0.5), perFile(stwb.Puts), perFile(stwb.Heads), perFile(stwb.Lists), perFile(stwb.Others)))
}

// writeMemory runs workload 14: the daemon's peak RSS while it writes
// 4 GiB sequentially, and while 16 writers write 256 MiB each, against
// --cache-memory.
func (e *benchEnv) writeMemory() {
	const budget = 512 * mib
	pattern := randomBytes(14, 64*mib)
	type result struct {
		hwm  int64
		rate float64
	}
	run := func(writers int, each int64) result {
		m := e.benchMount("--cache-memory", "512MiB")
		unix.Sync()
		var wg sync.WaitGroup
		start := time.Now()
		for i := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				p := filepath.Join(m.Dir, fmt.Sprintf("write-mem-%02d.bin", i))
				if err := writeStream(p, each, pattern, i); err != nil {
					e.t.Errorf("workload 14: %s: %v", p, err)
				}
			}()
		}
		wg.Wait()
		r := result{hwm: procStatusBytes(e.t, m.Pid(), "VmHWM"), rate: mbps(int64(writers)*each, time.Since(start))}
		m.Stop()
		e.deletePrefix("write-mem-")
		return r
	}
	for _, c := range []struct {
		name    string
		writers int
		each    int64
	}{
		{"14a. peak RSS during a 4 GiB sequential write", 1, 4 * gib},
		{"14b. peak RSS during 16 writers of 256 MiB each", 16, 256 * mib},
	} {
		r := run(c.writers, c.each)
		e.row(c.name, fmt.Sprintf("%d MiB", r.hwm/mib), fmt.Sprintf("%d MiB budget", budget/mib), fmt.Sprintf("%.2f", float64(r.hwm)/budget),
			fmt.Sprintf("goal ≤ budget + 64 MiB: %s; --cache-memory 512MiB; written at %s aggregate, close included", metOrNot(r.hwm <= budget+64*mib), fmtMBps(r.rate)))
	}
}

// writeStream writes size bytes to path in 1 MiB writes taken from
// pattern (starting seed MiB into it) and closes it.
func writeStream(path string, size int64, pattern []byte, seed int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	chunks := int64(len(pattern) / mib)
	for i := int64(0); i < size/mib; i++ {
		c := (i + int64(seed)) % chunks
		if _, err := f.Write(pattern[c*mib : (c+1)*mib]); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}

// pacedWriter runs workload 15: a recording at 320 kbit/s (4 KiB every
// 100 ms) for 60 s; no write may take a round trip of the store.
func (e *benchEnv) pacedWriter() {
	const (
		chunk    = 4 << 10
		interval = 100 * time.Millisecond
		writes   = 600 // 60 s
		// The recording so far: it crosses into its second part 10 s in,
		// so that part 1 goes up while the writer goes on.
		prefill = 8*mib - 100*chunk
		// Meanwhile another file is written at 8 MiB/s (one part a
		// second) and closed every 64 MiB, so uploads, CreateMultipartUpload
		// and CompleteMultipartUpload requests are in flight throughout.
		bgFile = 64 * mib
	)
	m := e.benchMount()
	unix.Sync()
	pattern := randomBytes(15, 8*mib)
	f, err := os.Create(filepath.Join(m.Dir, "write-rec.mp3"))
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := f.Write(pattern[:prefill]); err != nil {
		e.t.Fatal(err)
	}

	stop := make(chan struct{})
	var bgBytes atomic.Int64
	var bgCloses []timeSpan // when the second file's closes ran; read after bgDone
	var bgDone sync.WaitGroup
	bgDone.Add(1)
	go func() {
		defer bgDone.Done()
		tick := time.NewTicker(125 * time.Millisecond)
		defer tick.Stop()
		for n := 0; ; n++ {
			g, err := os.Create(filepath.Join(m.Dir, fmt.Sprintf("write-bg-%02d.bin", n)))
			if err != nil {
				e.t.Error(err)
				return
			}
			for off := 0; off < bgFile; off += mib {
				select {
				case <-stop:
					g.Close()
					return
				case <-tick.C:
				}
				if _, err := g.Write(pattern[off%len(pattern) : off%len(pattern)+mib]); err != nil {
					e.t.Error(err)
					g.Close()
					return
				}
				bgBytes.Add(mib)
			}
			t0 := time.Now()
			err = g.Close()
			bgCloses = append(bgCloses, timeSpan{t0, time.Now()})
			if err != nil {
				e.t.Error(err)
				return
			}
		}
	}()

	// Two controls, each just after the mount's write: a FUSE round trip
	// to the daemon that go-fuse answers without bucketfs's code (the
	// security.capability lookup the kernel makes before each write), and
	// the same write to a local file. They show what the machine's
	// scheduling alone costs.
	local, err := os.Create(filepath.Join(e.t.TempDir(), "rec.mp3"))
	if err != nil {
		e.t.Fatal(err)
	}
	defer local.Close()
	var localLat, fuseLat []time.Duration
	e.px.Reset()
	lat := make([]time.Duration, 0, writes)
	var slow []timeSpan
	next := time.Now()
	start := next
	for i := range writes {
		if d := time.Until(next); d > 0 {
			time.Sleep(d)
		}
		off := prefill + i*chunk
		t0 := time.Now()
		if _, err := f.Write(pattern[off%len(pattern) : off%len(pattern)+chunk]); err != nil {
			e.t.Fatalf("workload 15: write %d: %v", i, err)
		}
		l := time.Since(t0)
		lat = append(lat, l)
		if l > benchLatency {
			slow = append(slow, timeSpan{t0, t0.Add(l)})
		}
		t1 := time.Now()
		unix.Fgetxattr(int(f.Fd()), "security.capability", nil)
		fuseLat = append(fuseLat, time.Since(t1))
		t1 = time.Now()
		if _, err := local.Write(pattern[off%len(pattern) : off%len(pattern)+chunk]); err != nil {
			e.t.Fatal(err)
		}
		localLat = append(localLat, time.Since(t1))
		next = next.Add(interval)
	}
	st := e.px.Stats()
	close(stop)
	bgDone.Wait()
	bgTook := time.Since(start)
	t0 := time.Now()
	if err := f.Close(); err != nil {
		e.t.Errorf("workload 15: close: %v", err)
	}
	closeTook := time.Since(t0)
	m.Stop()
	e.deletePrefix("write-rec")
	e.deletePrefix("write-bg-")

	maxLat := slices.Max(lat)
	over := func(ls []time.Duration) (n int) {
		for _, l := range ls {
			if l > benchLatency {
				n++
			}
		}
		return n
	}
	var slowList []string
	for i, w := range slow {
		if i == 10 {
			slowList = append(slowList, fmt.Sprintf("%d more", len(slow)-i))
			break
		}
		s := fmt.Sprintf("at %.1f s: %s", w.from.Sub(start).Seconds(), fmtMs(w.to.Sub(w.from)))
		for _, c := range bgCloses {
			if c.from.Before(w.to) && w.from.Before(c.to) {
				s += fmt.Sprintf(" (the second file's close ran %.1f-%.1f s)", c.from.Sub(start).Seconds(), c.to.Sub(start).Seconds())
			}
		}
		slowList = append(slowList, s)
	}
	e.row("15. 320 kbit/s writer for 60 s (4 KiB every 100 ms)", fmt.Sprintf("%d writes > 20 ms, max %s", len(slow), fmtMs(maxLat)),
		fmt.Sprintf("FUSE round trip: %d > 20 ms, max %s", over(fuseLat), fmtMs(slices.Max(fuseLat))), "-",
		fmt.Sprintf("goal: no write slower than one round trip (20 ms): %s; median %s, p99 %s; the limit column is a FUSE round trip the daemon answers without bucketfs's code (getxattr security.capability), made just after each write: what the machine's scheduling costs; the same 4 KiB written to a local file: %d > 20 ms, max %s; meanwhile the mount uploaded %d parts (%d MiB): the recording's part 1 (crossed 10 s in) and a second file written at %.1f MiB/s and closed every 64 MiB; closing the recording took %s; slow writes: %s",
			metOrNot(len(slow) == 0), fmtMs(median(lat)), fmtMs(percentile(lat, 0.99)), over(localLat), fmtMs(slices.Max(localLat)), st.Puts, st.PutBytes/mib,
			float64(bgBytes.Load())/mib/bgTook.Seconds(), fmtMs(closeTook), cmp.Or(strings.Join(slowList, "; "), "none")))
}

// timeSpan is a stretch of time.
type timeSpan struct{ from, to time.Time }

// limitUpload uploads the first size bytes of the file at path as key
// with a parallel multipart upload through the proxy: parts of part
// bytes, conc in flight. It returns the time from CreateMultipartUpload
// to CompleteMultipartUpload's answer, and deletes the object.
func (e *benchEnv) limitUpload(key, path string, size, part int64, conc int) time.Duration {
	e.t.Helper()
	f, err := os.Open(path)
	if err != nil {
		e.t.Fatal(err)
	}
	defer f.Close()
	ctx := context.Background()
	start := time.Now()
	cr, err := e.direct.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(e.bucket), Key: aws.String(key)})
	if err != nil {
		e.t.Fatal(err)
	}
	n := int((size + part - 1) / part)
	parts := make([]types.CompletedPart, n)
	jobs := make(chan int)
	var wg sync.WaitGroup
	var failed atomic.Bool
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				off := int64(i) * part
				l := min(part, size-off)
				out, err := e.direct.UploadPart(ctx, &s3.UploadPartInput{
					Bucket: aws.String(e.bucket), Key: aws.String(key), UploadId: cr.UploadId,
					PartNumber: aws.Int32(int32(i + 1)), Body: io.NewSectionReader(f, off, l), ContentLength: aws.Int64(l),
				})
				if err != nil {
					e.t.Error(err)
					failed.Store(true)
					continue
				}
				parts[i] = types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(int32(i + 1))}
			}
		}()
	}
	for i := range n {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	if failed.Load() {
		e.t.FailNow()
	}
	if _, err := e.direct.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket: aws.String(e.bucket), Key: aws.String(key), UploadId: cr.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
	}); err != nil {
		e.t.Fatal(err)
	}
	d := time.Since(start)
	e.deleteKeys(key)
	return d
}

// limitPuts PUTs each file under prefix through the proxy, conc at a
// time, and returns the time it took.
func (e *benchEnv) limitPuts(prefix string, paths []string, conc int) time.Duration {
	e.t.Helper()
	jobs := make(chan string)
	var wg sync.WaitGroup
	start := time.Now()
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range jobs {
				f, err := os.Open(p)
				if err != nil {
					e.t.Error(err)
					continue
				}
				fi, _ := f.Stat()
				_, err = e.direct.PutObject(context.Background(), &s3.PutObjectInput{
					Bucket: aws.String(e.bucket), Key: aws.String(prefix + filepath.Base(p)), Body: f, ContentLength: aws.Int64(fi.Size()),
				})
				f.Close()
				if err != nil {
					e.t.Error(err)
				}
			}
		}()
	}
	for _, p := range paths {
		jobs <- p
	}
	close(jobs)
	wg.Wait()
	return time.Since(start)
}

// objectSHA256 reads key straight from the server and hashes it.
func (e *benchEnv) objectSHA256(key string) [32]byte {
	e.t.Helper()
	out, err := client.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(e.bucket), Key: aws.String(key)})
	if err != nil {
		e.t.Fatal(err)
	}
	defer out.Body.Close()
	h := sha256.New()
	if _, err := io.CopyBuffer(h, out.Body, make([]byte, mib)); err != nil {
		e.t.Fatal(err)
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum
}

// countPrefix counts the objects under prefix and their bytes, straight
// from the server; directory markers do not count.
func (e *benchEnv) countPrefix(prefix string) (n int, size int64) {
	e.t.Helper()
	p := s3.NewListObjectsV2Paginator(client, &s3.ListObjectsV2Input{Bucket: aws.String(e.bucket), Prefix: aws.String(prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(context.Background())
		if err != nil {
			e.t.Fatal(err)
		}
		for _, o := range page.Contents {
			if strings.HasSuffix(aws.ToString(o.Key), "/") {
				continue // a directory marker
			}
			n++
			size += aws.ToInt64(o.Size)
		}
	}
	return n, size
}

// deletePrefix deletes every object under prefix, straight on the server.
func (e *benchEnv) deletePrefix(prefix string) {
	e.t.Helper()
	var keys []string
	p := s3.NewListObjectsV2Paginator(client, &s3.ListObjectsV2Input{Bucket: aws.String(e.bucket), Prefix: aws.String(prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(context.Background())
		if err != nil {
			e.t.Fatal(err)
		}
		for _, o := range page.Contents {
			keys = append(keys, aws.ToString(o.Key))
		}
	}
	e.deleteKeys(keys...)
}

// deleteKeys deletes keys straight on the server, 1,000 a request.
func (e *benchEnv) deleteKeys(keys ...string) {
	e.t.Helper()
	for len(keys) > 0 {
		batch := keys[:min(len(keys), 1000)]
		keys = keys[len(batch):]
		var ids []types.ObjectIdentifier
		for _, k := range batch {
			ids = append(ids, types.ObjectIdentifier{Key: aws.String(k)})
		}
		if _, err := client.DeleteObjects(context.Background(), &s3.DeleteObjectsInput{
			Bucket: aws.String(e.bucket), Delete: &types.Delete{Objects: ids, Quiet: aws.Bool(true)},
		}); err != nil {
			e.t.Fatal(err)
		}
	}
}

// serverPid finds the versitygw process serving endpoint.
func serverPid(t *testing.T) int {
	t.Helper()
	port := endpoint[strings.LastIndexByte(endpoint, ':'):]
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		args := strings.Split(string(cmd), "\x00")
		if strings.HasSuffix(args[0], "versitygw") && slices.ContainsFunc(args, func(a string) bool { return strings.HasSuffix(a, port) }) {
			return pid
		}
	}
	t.Fatalf("no versitygw process serving %s", endpoint)
	return 0
}

// cpuTimes are the machine's CPU times from /proc/stat, in clock ticks.
type cpuTimes struct{ busy, total int64 }

func (c cpuTimes) sub(o cpuTimes) cpuTimes { return cpuTimes{c.busy - o.busy, c.total - o.total} }

// percent is the busy share of all cores.
func (c cpuTimes) percent() float64 {
	if c.total == 0 {
		return 0
	}
	return 100 * float64(c.busy) / float64(c.total)
}

// machineCPU reads the machine's CPU times (user to steal; guest time is
// counted in user already): idle and iowait count as not busy.
func machineCPU(t *testing.T) cpuTimes {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		t.Fatal(err)
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	var c cpuTimes
	s := bufio.NewScanner(bytes.NewReader(line))
	s.Split(bufio.ScanWords)
	for i := 0; s.Scan() && i <= 8; i++ {
		if i == 0 {
			continue // "cpu"
		}
		v, _ := strconv.ParseInt(s.Text(), 10, 64)
		c.total += v
		if i != 4 && i != 5 { // idle, iowait
			c.busy += v
		}
	}
	return c
}
