//go:build bench

package integration

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bucketfs/bucketfs/integration/harness"
	"golang.org/x/sys/unix"
)

// dropAllCaches empties the kernel's page cache, as after a reboot, so
// reads come from the disk.
func (e *benchEnv) dropAllCaches() {
	e.t.Helper()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0o200); err != nil {
		e.t.Fatalf("dropping the page cache (needs root): %v", err)
	}
}

// diskTier runs workload 8: a 1 GiB file read cold with a disk cache, then
// re-read by a restarted daemon from the disk tier, against reading the
// same bytes from a local file on the same disk.
func (e *benchEnv) diskTier() {
	cacheDir := filepath.Join(e.t.TempDir(), "cache")
	p := func(m *harness.Mount) string { return filepath.Join(m.Dir, "big-0.bin") }

	// The same cold read without a disk cache, alternating with it three
	// times (medians), so both run in the same conditions: single runs
	// here vary by a third.
	var plainRates, cacheRates []float64
	var plainCPU, cacheCPU []time.Duration   // the daemon's, during each read
	var plainRest, cacheRest []time.Duration // the rest of the machine's (cpuSnap.rest)
	var stats map[string]int64
	for i := range 3 {
		plain := e.benchMount()
		c0, s0 := procCPU(e.t, plain.Pid()), e.cpuNow(plain.Pid())
		n, d, err := readFile(p(plain), 0)
		if err != nil || n != gib {
			e.t.Fatalf("workload 8 plain cold read: %d bytes, %v", n, err)
		}
		plainCPU = append(plainCPU, procCPU(e.t, plain.Pid())-c0)
		plainRest = append(plainRest, e.cpuNow(plain.Pid()).rest(s0))
		plainRates = append(plainRates, mbps(n, d))
		plain.Stop()

		dir := cacheDir
		if i < 2 {
			dir = filepath.Join(e.t.TempDir(), "cache")
		}
		m := e.benchMount(append([]string{"--cache-dir", dir}, e.profileArgs(fmt.Sprintf("w8a-%d", i))...)...)
		c0, s0 = procCPU(e.t, m.Pid()), e.cpuNow(m.Pid())
		n, d, err = readFile(p(m), 0)
		if err != nil || n != gib {
			e.t.Fatalf("workload 8 cold read: %d bytes, %v", n, err)
		}
		cacheCPU = append(cacheCPU, procCPU(e.t, m.Pid())-c0)
		cacheRest = append(cacheRest, e.cpuNow(m.Pid()).rest(s0))
		cacheRates = append(cacheRates, mbps(n, d))
		stats = readStats(e.t, m.Dir)
		m.Stop()
	}
	slices.Sort(plainRates)
	slices.Sort(cacheRates)
	slices.Sort(plainCPU)
	slices.Sort(cacheCPU)
	slices.Sort(plainRest)
	slices.Sort(cacheRest)
	base, cold := plainRates[1], cacheRates[1]
	e.row("8a. sequential 1 GiB, cold, with --cache-dir", fmtMBps(cold), fmtMBps(base)+" (no disk cache)", fmt.Sprintf("%.2f", cold/base),
		fmt.Sprintf("medians of 3 alternating runs (with: %.0f-%.0f, without: %.0f-%.0f MB/s); %s with, %s without, the rest of the machine beyond the daemon, server, proxy and reader %.2f CPU-s/GiB with, %.2f without (medians, during the read); blocks written to the disk cache meanwhile; target ≥ 0.95",
			cacheRates[0], cacheRates[2], plainRates[0], plainRates[2], cpuPerGiB(cacheCPU[1], gib), cpuPerGiB(plainCPU[1], gib), cacheRest[1].Seconds(), plainRest[1].Seconds()))
	e.notes = append(e.notes, fmt.Sprintf("By the end of workload 8a's last cold read the daemon had written %d blocks (%d MiB) to the disk cache; the rest were still queued or set aside, to be written from memory when the writers were free or at unmount.",
		stats["disk_writes"], stats["disk_write_bytes"]/mib))
	if !e.runs("8b") && !e.runs("8c") && !e.runs("8d") {
		return
	}

	// The same bytes in a local file on the disk holding the cache.
	local := filepath.Join(filepath.Dir(cacheDir), "local.bin")
	f, err := os.Create(local)
	if err != nil {
		e.t.Fatal(err)
	}
	data := randomBytes(7, gib)
	f.Write(data)
	f.Sync()
	f.Close()
	data = nil

	type result struct{ bucketfs, local float64 }
	var res [2]result
	for i, dropped := range []bool{true, false} {
		m := e.benchMount("--cache-dir", cacheDir)
		if dropped {
			e.dropAllCaches()
		} else {
			readFile(local, 0) // both in the page cache
		}
		e.px.Reset()
		n, d, err := readFile(p(m), 0)
		if err != nil || n != gib {
			e.t.Fatalf("workload 8 re-read: %d bytes, %v", n, err)
		}
		gets := e.px.Stats().Gets
		res[i].bucketfs = mbps(n, d)
		m.Stop()
		if dropped {
			e.dropAllCaches()
		}
		ln, ld, err := readFile(local, 0)
		if err != nil {
			e.t.Fatal(err)
		}
		res[i].local = mbps(ln, ld)
		what := "page cache dropped (as after a reboot)"
		if !dropped {
			what = "cache files in the page cache"
		}
		e.row(fmt.Sprintf("8%c. re-read 1 GiB after restart, disk tier, %s", 'b'+i, what), fmtMBps(res[i].bucketfs), fmtMBps(res[i].local)+" (local file)",
			fmt.Sprintf("%.2f", res[i].bucketfs/res[i].local), fmt.Sprintf("%d GETs; cold read %s", gets, fmtMBps(cold)))
	}
	os.Remove(local)

	// Mount time: empty cache against this one (1 GiB of blocks).
	empty := filepath.Join(e.t.TempDir(), "empty")
	mountTime := func(dir string) time.Duration {
		var ds []time.Duration
		for range 5 {
			start := time.Now()
			m := e.benchMount("--cache-dir", dir)
			ds = append(ds, time.Since(start))
			m.Stop()
		}
		return median(ds)
	}
	full, none := mountTime(cacheDir), mountTime(empty)
	blocks := 0
	filepath.WalkDir(filepath.Join(cacheDir, "blocks"), func(_ string, de os.DirEntry, err error) error {
		if err == nil && de.Type().IsRegular() {
			blocks++
		}
		return nil
	})
	e.row("8d. time to mount with a full 1 GiB disk cache", fmtMs(full), fmtMs(none)+" (empty cache)", fmt.Sprintf("%.2f", float64(full)/float64(none)),
		fmt.Sprintf("median of 5; %d block files; start to mounted, including one LIST through the proxy", blocks))
}

// epochs runs workload 9: a dataset of twice the memory budget read twice
// with a disk cache; the second epoch should make no GET.
func (e *benchEnv) epochs() {
	const budget = 256 * mib
	cacheDir := filepath.Join(e.t.TempDir(), "cache")
	m := e.benchMount("--cache-dir", cacheDir, "--cache-memory", "256MiB")
	dir := filepath.Join(m.Dir, "dataset")
	names, err := os.ReadDir(dir)
	if err != nil {
		e.t.Fatal(err)
	}
	var rates []float64
	var gets []int64
	for range 2 {
		e.px.Reset()
		var total int64
		start := time.Now()
		for _, de := range names {
			p := filepath.Join(dir, de.Name())
			dropCache(e.t, p)
			n, _, err := readFile(p, 0)
			if err != nil {
				e.t.Fatal(err)
			}
			total += n
		}
		rates = append(rates, mbps(total, time.Since(start)))
		gets = append(gets, e.px.Stats().Gets)
		if total != 2*budget {
			e.t.Fatalf("dataset read %d bytes, want %d", total, 2*budget)
		}
	}
	e.row("9. dataset of 2x --cache-memory, 2 epochs", fmt.Sprintf("%d GETs in epoch 2", gets[1]), fmt.Sprintf("%d GETs in epoch 1", gets[0]), "-",
		fmt.Sprintf("%d files, %d MiB, --cache-memory 256MiB; epoch 1 %s, epoch 2 %s; target 0 GETs in epoch 2", len(names), 2*budget/mib, fmtMBps(rates[0]), fmtMBps(rates[1])))
	m.Stop()
	e.randomEpochs(names)
}

// randomEpochs runs workload 9b: the same dataset read as 256 KiB records
// in a new random order each epoch by 4 threads, as a training loader
// would, with a fresh disk cache.
func (e *benchEnv) randomEpochs(names []os.DirEntry) {
	const (
		rec     = 256 << 10
		threads = 4
		size    = 8 * mib // each shard
	)
	m := e.benchMount("--cache-dir", filepath.Join(e.t.TempDir(), "cache"), "--cache-memory", "256MiB")
	defer m.Stop()
	files := make([]*os.File, len(names))
	for i, de := range names {
		f, err := os.Open(filepath.Join(m.Dir, "dataset", de.Name()))
		if err != nil {
			e.t.Fatal(err)
		}
		defer f.Close()
		unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_RANDOM)
		files[i] = f
	}
	perFile := size / rec
	var notes []string
	var gets [2]int64
	for ep := range 2 {
		for _, f := range files {
			unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
		}
		e.px.Reset()
		order := rand.New(rand.NewPCG(9, uint64(ep))).Perm(len(files) * perFile)
		var next atomic.Int64
		var wg sync.WaitGroup
		start := time.Now()
		for range threads {
			wg.Add(1)
			go func() {
				defer wg.Done()
				buf := make([]byte, rec)
				for {
					i := next.Add(1) - 1
					if i >= int64(len(order)) {
						return
					}
					f, off := files[order[i]/perFile], int64(order[i]%perFile)*rec
					if n, err := unix.Pread(int(f.Fd()), buf, off); err != nil || n != rec {
						e.t.Errorf("workload 9b: record at %d: %d bytes, %v", off, n, err)
						return
					}
				}
			}()
		}
		wg.Wait()
		d := time.Since(start)
		st := e.px.Stats()
		gets[ep] = st.Gets
		notes = append(notes, fmt.Sprintf("epoch %d %s, %d GETs, %d MiB fetched", ep+1, fmtMBps(mbps(int64(len(order))*rec, d)), st.Gets, st.GetBytes/mib))
	}
	stats := readStats(e.t, m.Dir)
	e.row("9b. the dataset as random 256 KiB records, 4 threads, 2 epochs, --cache-dir", fmt.Sprintf("%d GETs in epoch 2", gets[1]), fmt.Sprintf("%d GETs in epoch 1", gets[0]), "-",
		fmt.Sprintf("%s; %d blocks fetched whole after a second miss; without --cache-dir every epoch fetches each record", strings.Join(notes, "; "), stats["random_promoted"]))
}
