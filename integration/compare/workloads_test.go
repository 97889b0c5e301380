//go:build compare

package compare

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// errWrong marks a wrong byte: the row fails for that tool.
var errWrong = errors.New("WRONG BYTES")

// outcome is what a workload function measured: a value in the row's
// unit, or where it stopped.
type outcome struct {
	value   float64
	stopped bool // the cap ended it; value is what it reached
	note    string
	err     error
}

// runRow runs workload w for tool tr on a fresh mount with the page cache
// dropped, under the row's time cap (shortened to what is left of the
// run's budget), and records the result.
func (e *env) runRow(w Workload, tr toolRun) {
	t := e.t
	res := Result{Tool: tr.name, Work: w.ID}
	left := time.Until(e.deadline)
	capd := min(e.cfg.caps[w.ID], left)
	if capd < 10*time.Second {
		res.Status, res.Err = NotRun, fmt.Sprintf("the run's %s budget was spent", e.cfg.budget)
		e.results.Add(res)
		t.Logf("%-7s %-8s not run: budget spent", w.ID, tr.name)
		return
	}
	res.Cap = capd.Seconds()
	if err := dropCaches(); err != nil {
		t.Fatalf("drop caches: %v", err)
	}
	m, err := e.mount(tr)
	if err != nil {
		res.Status, res.Err = Failed, "mount: "+err.Error()
		e.results.Add(res)
		t.Logf("%-7s %-8s mount failed: %v", w.ID, tr.name, err)
		return
	}
	e.px.Reset()
	ctx, cancel := context.WithTimeout(context.Background(), capd)
	done := make(chan outcome, 1)
	go func() { done <- e.workload(ctx, w, tr, m.dir) }()
	var o outcome
	select {
	case o = <-done:
	case <-time.After(capd + 15*time.Second):
		// Stuck in a system call on the mount: pull the mount away so
		// the call returns.
		forceUnmount(m.dir, m.conn)
		select {
		case o = <-done:
		case <-time.After(30 * time.Second):
			o = outcome{err: errors.New("the workload hung on the mount even after it was detached")}
		}
		o.stopped, o.note = true, strings.TrimSpace(o.note+" (the mount was detached to end a system call that outlived the cap)")
	}
	cancel()
	if tr.writeBack {
		// What close acknowledged but the store does not hold yet (a row
		// stopped at its cap): wait for it before unmounting, as the
		// unmount itself would (up to --unmount-wait).
		if out, err := exec.Command(tr.exe, "sync", "--timeout", "60s", m.dir).CombinedOutput(); err != nil {
			o.note = strings.TrimSpace(o.note + fmt.Sprintf("; bucketfs sync before the unmount: %v %s", err, strings.TrimSpace(string(out))))
		}
	}
	if err := m.stop(); err != nil {
		o.note = strings.TrimSpace(o.note + "; unmount: " + err.Error())
	}
	// rclone's cache of row 2 alone holds 4 GiB: free the disk. (bucketfs
	// --write-back's journal and staged files are there too: the unmount
	// waited for their uploads.)
	os.RemoveAll(filepath.Join(filepath.Dir(m.dir), "cache"))
	res.Value, res.Note = o.value, o.note
	switch {
	case o.err != nil && !(o.stopped && !errors.Is(o.err, errWrong)):
		res.Status, res.Err = Failed, o.err.Error()
		res.Log = strings.ReplaceAll(tail(m.out.String()), "\n", " / ")
	case o.stopped:
		res.Status = Stopped
	default:
		res.Status = OK
	}
	e.results.Add(res)
	t.Logf("%-7s %-8s %s  %s", w.ID, tr.name, res.Format(w), res.Note)
}

// workload dispatches to the row's function.
func (e *env) workload(ctx context.Context, w Workload, tr toolRun, dir string) outcome {
	switch w.ID {
	case "seq":
		return e.readBig(ctx, dir, []int{0}, e.cfg.size)
	case "par4":
		return e.readBig(ctx, dir, []int{0, 1, 2, 3}, e.cfg.parSize)
	case "rand":
		return e.random(ctx, dir)
	case "ttfb":
		return e.ttfb(ctx, dir)
	case "ls2k":
		return e.ls(ctx, filepath.Join(dir, "small"), 2000, smallSize)
	case "ls100k":
		return e.ls(ctx, filepath.Join(dir, "many"), e.cfg.many, 0)
	case "small":
		return e.small(ctx, dir)
	case "write":
		return e.write(ctx, dir, tr.key)
	case "cpr":
		return e.copyTree(ctx, dir, tr.key)
	}
	return outcome{err: fmt.Errorf("unknown workload %s", w.ID)}
}

func mbps(n int64, d time.Duration) float64 { return float64(n) / d.Seconds() / 1e6 }

// fetchNote says how many bytes the proxy served per byte read.
func (e *env) fetchNote(read int64) string {
	st := e.px.Stats()
	if read == 0 {
		return fmt.Sprintf("%d GETs", st.Gets)
	}
	return fmt.Sprintf("fetched/read %.2f (%d MiB served by the proxy for %d MiB read), %d GETs",
		float64(st.GetBytes)/float64(read), st.GetBytes/mib, read/mib, st.Gets)
}

// readBig reads the first size bytes of each of the large objects objs,
// one reader each, with 1 MiB reads, checking their SHA-256 (or, for a
// prefix, every byte).
func (e *env) readBig(ctx context.Context, dir string, objs []int, size int64) outcome {
	var total atomic.Int64
	errs := make(chan error, len(objs))
	start := time.Now()
	var wg sync.WaitGroup
	for _, i := range objs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- e.readOne(ctx, filepath.Join(dir, fmt.Sprintf("big-%d.bin", i)), i, size, &total)
		}()
	}
	wg.Wait()
	d := time.Since(start)
	close(errs)
	o := outcome{value: mbps(total.Load(), d), note: e.fetchNote(total.Load())}
	for err := range errs {
		if err != nil && (o.err == nil || errors.Is(err, errWrong)) {
			o.err = err
		}
	}
	if ctx.Err() != nil {
		o.stopped = true
	}
	return o
}

func (e *env) readOne(ctx context.Context, path string, obj int, size int64, total *atomic.Int64) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	buf := make([]byte, mib)
	var off int64
	for off < size {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		n, err := io.ReadFull(f, buf[:min(mib, size-off)])
		if n > 0 {
			h.Write(buf[:n])
			if size < e.cfg.size && !bytes.Equal(buf[:n], e.expectBig(obj, off, int64(n))) {
				return fmt.Errorf("%w: %s differs from the stored data within [%d, %d)", errWrong, filepath.Base(path), off, off+int64(n))
			}
			off += int64(n)
			total.Add(int64(n))
		}
		if err != nil {
			return fmt.Errorf("%s at offset %d: %w", filepath.Base(path), off, err)
		}
	}
	if size == e.cfg.size {
		if extra, _ := f.Read(buf[:1]); extra != 0 {
			return fmt.Errorf("%w: %s is longer than %d bytes", errWrong, filepath.Base(path), size)
		}
		if got, want := [32]byte(h.Sum(nil)), e.sums[fmt.Sprintf("big-%d.bin", obj)]; got != want {
			return fmt.Errorf("%w: SHA-256 of %s is %x, want %x", errWrong, filepath.Base(path), got[:8], want[:8])
		}
	}
	return nil
}

// random runs row 3: randThreads threads, each with its own handle of
// big-1.bin, reading randPerThread records of randSize at offsets drawn
// from a fixed seed, every record checked byte for byte.
func (e *env) random(ctx context.Context, dir string) outcome {
	var total atomic.Int64
	errs := make(chan error, randThreads)
	var wg sync.WaitGroup
	start := time.Now()
	for th := range randThreads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- func() error {
				f, err := os.Open(filepath.Join(dir, "big-1.bin"))
				if err != nil {
					return err
				}
				defer f.Close()
				rng := rand.New(rand.NewPCG(uint64(th), 14))
				buf := make([]byte, randSize)
				for range randPerThread {
					off := rng.Int64N(e.cfg.size-randSize) &^ 4095
					if ctx.Err() != nil {
						return ctx.Err()
					}
					if _, err := f.ReadAt(buf, off); err != nil {
						return fmt.Errorf("pread at %d: %w", off, err)
					}
					if !bytes.Equal(buf, e.expectBig(1, off, randSize)) {
						return fmt.Errorf("%w: big-1.bin differs from the stored data within [%d, %d)", errWrong, off, off+randSize)
					}
					total.Add(randSize)
				}
				return nil
			}()
		}()
	}
	wg.Wait()
	close(errs)
	o := outcome{value: mbps(total.Load(), time.Since(start)), note: e.fetchNote(total.Load()), stopped: ctx.Err() != nil}
	for err := range errs {
		if err != nil && (o.err == nil || errors.Is(err, errWrong)) {
			o.err = err
		}
	}
	return o
}

// ttfb runs row 4: the directory is listed first (as a player's file
// chooser would), then each object is opened and its first 128 KiB read.
func (e *env) ttfb(ctx context.Context, dir string) outcome {
	if _, err := os.ReadDir(filepath.Join(dir, "ttfb")); err != nil {
		return outcome{err: err}
	}
	var ds []time.Duration
	buf := make([]byte, 128<<10)
	for i := range ttfbObjects {
		if ctx.Err() != nil {
			return outcome{stopped: true, err: ctx.Err()}
		}
		start := time.Now()
		f, err := os.Open(filepath.Join(dir, "ttfb", fmt.Sprintf("obj-%02d.bin", i)))
		if err != nil {
			return outcome{err: err}
		}
		_, err = io.ReadFull(f, buf)
		d := time.Since(start)
		f.Close()
		if err != nil {
			return outcome{err: err}
		}
		if !bytes.Equal(buf, e.ttfbData(i)[:len(buf)]) {
			return outcome{err: fmt.Errorf("%w: the first 128 KiB of ttfb/obj-%02d.bin", errWrong, i)}
		}
		ds = append(ds, d)
	}
	slices.Sort(ds)
	return outcome{value: float64(ds[len(ds)/2]) / 1e6,
		note: fmt.Sprintf("min %.1f ms, max %.1f ms", float64(ds[0])/1e6, float64(ds[len(ds)-1])/1e6)}
}

// ls runs row 5: `ls -l` of a directory of n entries, each of which must
// show with its size.
func (e *env) ls(ctx context.Context, dir string, n int, size int64) outcome {
	start := time.Now()
	out, err := exec.CommandContext(ctx, "ls", "-l", dir).Output()
	d := time.Since(start)
	if ctx.Err() != nil {
		st := e.px.Stats()
		return outcome{stopped: true, err: ctx.Err(), note: fmt.Sprintf("by the cap: %d LISTs, %d HEADs, %d GETs", st.Lists, st.Heads, st.Gets)}
	}
	if err != nil {
		return outcome{err: fmt.Errorf("ls -l: %v", err)}
	}
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	entries := 0
	for _, l := range lines[1:] { // "total N"
		f := strings.Fields(l)
		if len(f) < 9 || f[4] != fmt.Sprint(size) {
			return outcome{err: fmt.Errorf("%w: ls -l printed %q, want a file of %d bytes", errWrong, l, size)}
		}
		entries++
	}
	if entries != n {
		return outcome{err: fmt.Errorf("%w: ls -l listed %d entries, want %d", errWrong, entries, n)}
	}
	st := e.px.Stats()
	return outcome{value: d.Seconds(), note: fmt.Sprintf("%d LISTs, %d HEADs, %d GETs", st.Lists, st.Heads, st.Gets)}
}

// small runs row 6: like `cat small/* > /dev/null`, the directory listed
// and each file read whole in listing order, each checked by SHA-256.
func (e *env) small(ctx context.Context, dir string) outcome {
	start := time.Now()
	ents, err := os.ReadDir(filepath.Join(dir, "small"))
	if err != nil {
		return outcome{err: err}
	}
	if len(ents) != 2000 {
		return outcome{err: fmt.Errorf("%w: the directory lists %d files, want 2000", errWrong, len(ents))}
	}
	var read int64
	for i, ent := range ents {
		if ctx.Err() != nil {
			return outcome{stopped: true, value: time.Since(start).Seconds(), note: fmt.Sprintf("%d of 2000 files read", i), err: ctx.Err()}
		}
		b, err := os.ReadFile(filepath.Join(dir, "small", ent.Name()))
		if err != nil {
			return outcome{err: err}
		}
		read += int64(len(b))
		if sha256.Sum256(b) != e.sums["small/"+ent.Name()] {
			return outcome{err: fmt.Errorf("%w: small/%s (%d bytes) does not match the stored data", errWrong, ent.Name(), len(b))}
		}
	}
	d := time.Since(start)
	st := e.px.Stats()
	return outcome{value: d.Seconds(), note: fmt.Sprintf("%.1f ms a file; %d GETs, %d HEADs, %d LISTs; %s",
		d.Seconds()*1000/2000, st.Gets, st.Heads, st.Lists, e.fetchNote(read))}
}

// write runs row 7: dd of the local source into the mount, timed until
// the object is in the store with its full size; then its SHA-256 is
// checked through the S3 API.
func (e *env) write(ctx context.Context, dir, tool string) outcome {
	key := "w7-" + tool + ".bin"
	start := time.Now()
	cmd := exec.CommandContext(ctx, "dd", "if="+e.srcBig, "of="+filepath.Join(dir, key), "bs=1M")
	if out, err := cmd.CombinedOutput(); err != nil {
		if ctx.Err() != nil {
			return outcome{stopped: true, err: ctx.Err(), note: "dd had not returned"}
		}
		return outcome{err: fmt.Errorf("dd: %v %s", err, strings.TrimSpace(string(out)))}
	}
	ddTook := time.Since(start)
	if err := e.waitStored(ctx, []string{key}, e.cfg.size); err != nil {
		if ctx.Err() != nil {
			return outcome{stopped: true, err: ctx.Err(), note: fmt.Sprintf("dd returned after %.2f s; the object was not in the store at the cap", ddTook.Seconds())}
		}
		return outcome{err: err}
	}
	d := time.Since(start)
	st := e.px.Stats()
	if err := e.checkStored(key, e.sums["src-big"]); err != nil {
		return outcome{err: err}
	}
	return outcome{value: mbps(e.cfg.size, d), note: fmt.Sprintf("dd (close included) returned after %.2f s, the object was in the store after %.2f s; SHA-256 of the stored object matches; %d PUTs/parts, %d MiB uploaded",
		ddTook.Seconds(), d.Seconds(), st.Puts, st.PutBytes/mib)}
}

// copyTree runs row 8: cp -r of 2,000 local files of 100 KiB into the
// mount, timed until every object is in the store with its size; then
// each object's SHA-256 is checked through the S3 API.
func (e *env) copyTree(ctx context.Context, dir, tool string) outcome {
	prefix := "w8-" + tool
	start := time.Now()
	if out, err := exec.CommandContext(ctx, "cp", "-r", e.srcSmall, filepath.Join(dir, prefix)).CombinedOutput(); err != nil {
		if ctx.Err() != nil {
			return outcome{stopped: true, err: ctx.Err(), note: "cp had not returned"}
		}
		return outcome{err: fmt.Errorf("cp -r: %v %s", err, strings.TrimSpace(string(out)))}
	}
	cpTook := time.Since(start)
	var keys []string
	for i := range 2000 {
		keys = append(keys, fmt.Sprintf("%s/f-%04d.bin", prefix, i))
	}
	if err := e.waitStored(ctx, keys, smallSize); err != nil {
		if ctx.Err() != nil {
			return outcome{stopped: true, err: ctx.Err(), note: fmt.Sprintf("cp returned after %.1f s; not every object was in the store at the cap", cpTook.Seconds())}
		}
		return outcome{err: err}
	}
	d := time.Since(start)
	st := e.px.Stats()
	var wg sync.WaitGroup
	errs := make(chan error, len(keys))
	sem := make(chan struct{}, 16)
	for i, k := range keys {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			errs <- e.checkStored(k, sha256.Sum256(e.writeSmallData(i)))
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return outcome{err: err}
		}
	}
	return outcome{value: d.Seconds(), note: fmt.Sprintf("cp returned after %.1f s, every object was in the store after %.1f s; all 2,000 SHA-256 match; per file %.2f PUTs, %.2f HEADs, %.2f LISTs, %.2f others",
		cpTook.Seconds(), d.Seconds(), float64(st.Puts)/2000, float64(st.Heads)/2000, float64(st.Lists)/2000, float64(st.Others+st.Completes+st.Copies)/2000)}
}

// waitStored polls the server (not through the proxy) until every key is
// there with size bytes.
func (e *env) waitStored(ctx context.Context, keys []string, size int64) error {
	want := map[string]bool{}
	for _, k := range keys {
		want[k] = true
	}
	prefix := keys[0]
	if len(keys) > 1 {
		prefix = keys[0][:strings.LastIndexByte(keys[0], '/')+1]
	}
	for {
		found := 0
		p := s3.NewListObjectsV2Paginator(e.server, &s3.ListObjectsV2Input{Bucket: aws.String(e.bucket), Prefix: aws.String(prefix)})
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				return err
			}
			for _, o := range page.Contents {
				if want[aws.ToString(o.Key)] && aws.ToInt64(o.Size) == size {
					found++
				}
			}
		}
		if found == len(keys) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// checkStored reads key from the server and compares its SHA-256.
func (e *env) checkStored(key string, want [32]byte) error {
	out, err := e.server.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(e.bucket), Key: aws.String(key)})
	if err != nil {
		return fmt.Errorf("reading back %s: %w", key, err)
	}
	defer out.Body.Close()
	h := sha256.New()
	if _, err := io.Copy(h, out.Body); err != nil {
		return fmt.Errorf("reading back %s: %w", key, err)
	}
	if got := [32]byte(h.Sum(nil)); got != want {
		return fmt.Errorf("%w: the stored %s has SHA-256 %x, want %x", errWrong, key, got[:8], want[:8])
	}
	return nil
}
