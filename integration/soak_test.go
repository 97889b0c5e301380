package integration

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bucketfs/bucketfs/integration/proxy"
	"golang.org/x/sys/unix"
)

// soakDuration is how long TestSoak runs: 20s in `make test`,
// BUCKETFS_SOAK (a Go duration) for longer runs (`make soak`).
func soakDuration(t *testing.T) time.Duration {
	if s := os.Getenv("BUCKETFS_SOAK"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("BUCKETFS_SOAK=%q: %v", s, err)
		}
		return d
	}
	return 20 * time.Second
}

// TestSoak runs 64 readers (whole-file streams, random records, small
// files) through the fault proxy failing 5% of requests and cutting 2% of
// GET bodies. Every byte is checked, no read may fail, the daemon's peak
// RSS stays inside its memory budget, and its goroutines come back to
// where they were once the readers are done.
func TestSoak(t *testing.T) {
	const (
		budget   = 128 << 20
		readers  = 64
		bigFiles = 8
		small    = 200
	)
	objects := map[string][]byte{}
	big := make([][]byte, bigFiles)
	for i := range big {
		big[i] = randomBytes(uint64(100+i), 24<<20+i*4099)
		objects[fmt.Sprintf("big/%d.bin", i)] = big[i]
	}
	smalls := make([][]byte, small)
	for i := range smalls {
		smalls[i] = randomBytes(uint64(1000+i), 1+i*331%(64<<10))
		objects[fmt.Sprintf("small/%03d.txt", i)] = smalls[i]
	}
	b := newBucket(t, objects)
	addr := freeAddr(t)
	m, px := proxiedMount(t, b, "--cache-memory", "128MiB", "--block-size", "1MiB", "--max-readahead", "8MiB",
		"--metrics-addr", addr, "--max-retries", "5", "--request-timeout", "2s", "--log-level", "info")

	var ops, failures, bytesRead atomic.Int64
	var mu sync.Mutex
	var firstErrs []string
	fail := func(format string, a ...any) {
		failures.Add(1)
		mu.Lock()
		if len(firstErrs) < 10 {
			firstErrs = append(firstErrs, fmt.Sprintf(format, a...))
		}
		mu.Unlock()
	}
	// whole reads a file with its cached pages dropped and checks it.
	whole := func(p string, want []byte, what string, i int) {
		evictPages(p)
		got, err := preadAll(p)
		switch {
		case err != nil:
			fail("%s %d: %v", what, i, err)
		case !bytes.Equal(got, want):
			fail("%s %d: wrong bytes", what, i)
		}
		bytesRead.Add(int64(len(got)))
	}
	work := func(id int, until time.Time) {
		rng := rand.New(rand.NewPCG(uint64(id), 7))
		for time.Now().Before(until) {
			switch id % 3 {
			case 0: // a whole file, streamed
				i := rng.IntN(bigFiles)
				whole(filepath.Join(m.Dir, fmt.Sprintf("big/%d.bin", i)), big[i], "stream", i)
			case 1: // random records
				i := rng.IntN(bigFiles)
				f, err := os.Open(filepath.Join(m.Dir, fmt.Sprintf("big/%d.bin", i)))
				if err != nil {
					fail("open %d: %v", i, err)
					continue
				}
				unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
				for range 20 {
					n := 64<<10 + rng.IntN(192<<10)
					off := rng.Int64N(int64(len(big[i]) - n))
					buf := make([]byte, n)
					k, err := f.ReadAt(buf, off)
					switch {
					case err != nil:
						fail("record %d@%d: %v", n, off, err)
					case !bytes.Equal(buf[:k], big[i][off:off+int64(n)]):
						fail("record %d@%d: wrong bytes", n, off)
					}
					bytesRead.Add(int64(k))
				}
				f.Close()
			default: // small files
				i := rng.IntN(small)
				whole(filepath.Join(m.Dir, fmt.Sprintf("small/%03d.txt", i)), smalls[i], "small", i)
			}
			ops.Add(1)
		}
	}
	run := func(d time.Duration) {
		until := time.Now().Add(d)
		var wg sync.WaitGroup
		for id := range readers {
			wg.Add(1)
			go func() { defer wg.Done(); work(id, until) }()
		}
		wg.Wait()
	}
	// The daemon's goroutines apart from the two each pooled connection to
	// the store holds (how many stay pooled depends on the load's peak, up
	// to the connection limit; that is not a leak).
	goroutines := func() (own, total, conns float64) {
		mt := scrape(t, addr)
		total, conns = mt["go_goroutines"], mt["bucketfs_s3_connections"]
		return total - 2*conns, total, conns
	}

	// A short warm-up fills the connection pool, so the baseline holds
	// its goroutines too.
	run(2 * time.Second)
	time.Sleep(2 * time.Second)
	base, baseTotal, baseConns := goroutines()
	px.SetFaults(proxy.Faults{ErrorRate: 0.05, ErrorStatus: 500, ResetRate: 0.02, ResetAfter: 256 << 10})
	start := time.Now()
	d := soakDuration(t)
	run(d)
	px.SetFaults(proxy.Faults{})
	// Idle goroutines settle (closed files, finished read-ahead); under the
	// race detector on a busy machine that takes a while.
	var after, afterTotal, afterConns float64
	for settle := time.Now().Add(30 * time.Second); ; time.Sleep(250 * time.Millisecond) {
		if after, afterTotal, afterConns = goroutines(); after <= base+5 || time.Now().After(settle) {
			break
		}
	}
	hwm := procStatusBytes(t, m.Pid(), "VmHWM")
	mt := scrape(t, addr)
	t.Logf("soak: %d readers for %v: %d operations, %d MiB read, %d faults injected, %v SDK retries, %v body resumes; peak RSS %d MiB (budget %d MiB); goroutines %v before (%v connections), %v after (%v connections)",
		readers, time.Since(start).Round(time.Second), ops.Load(), bytesRead.Load()>>20, px.Injected(), mt["bucketfs_s3_retries_total"], mt["bucketfs_get_resumes_total"], hwm>>20, budget>>20, baseTotal, baseConns, afterTotal, afterConns)
	if failures.Load() > 0 {
		t.Errorf("%d of %d operations failed; first: %s", failures.Load(), ops.Load(), strings.Join(firstErrs, "; "))
	}
	if px.Injected() == 0 {
		t.Error("no fault was injected")
	}
	// The budget bounds blocks; the Go runtime, FUSE request buffers and
	// HTTP connections come on top (the same allowance as make bench).
	if os.Getenv("BUCKETFS_RACE") == "1" {
		t.Log("the daemon runs under the race detector, which multiplies its memory: peak RSS not checked")
	} else if hwm > budget+64<<20 {
		t.Errorf("peak RSS %d MiB, over the %d MiB budget + 64 MiB", hwm>>20, budget>>20)
	}
	if after > base+5 {
		t.Errorf("goroutines besides pooled connections grew from %v to %v", base, after)
	}
	if afterConns > 64 {
		t.Errorf("%v connections to the store open, over the limit of 64", afterConns)
	}
}

// procStatusBytes reads a "kB" field of /proc/PID/status.
func procStatusBytes(t *testing.T, pid int, field string) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}
