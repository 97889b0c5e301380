//go:build bench

package integration

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// Workload 16: a directory of 2,000 small files (ImageNet-style 100 KiB
// JPEGs) read whole, one after another, in listing order: one cat over the
// sorted files of a directory just listed, nothing cached. Compared with
// the same files fetched by one GET after another (what a reader waits for
// when every open costs a round trip) and, as the limit, with a Go client
// doing as many GETs at a time as the mount may (--max-parallel-gets, 32).
// 16b reads the same files in a shuffled order on a fresh mount: nothing
// is to be fetched that is not read. 16c is 16 with --tigris-list-content
// on, through the proxy emulating Tigris's inline listing content.

const (
	smallFiles    = 2000
	smallFileSize = 100 << 10
	smallParallel = 32 // --max-parallel-gets' default
)

// smallFilesBench runs workloads 16 and 16b.
func (e *benchEnv) smallFilesBench() {
	if !e.runs("16") && !e.runs("16b") && !e.runs("16c") {
		return
	}
	t := e.t
	objects := map[string][]byte{}
	var keys []string
	base := randomBytes(16, smallFiles+smallFileSize)
	for i := range smallFiles {
		k := fmt.Sprintf("images/n%05d.jpg", i)
		objects[k] = base[i : i+smallFileSize]
		keys = append(keys, k)
	}
	putAll(t, e.bucket, objects)

	// (a) one GET after another, and (b) the limit.
	serialD := e.getAll(keys, 1)
	limitD := e.getAll(keys, smallParallel)
	total := int64(smallFiles * smallFileSize)

	if e.runs("16") {
		m := e.benchMount()
		dir := filepath.Join(m.Dir, "images")
		ents, err := os.ReadDir(dir)
		if err != nil || len(ents) != smallFiles {
			t.Fatalf("listing: %d entries, %v", len(ents), err)
		}
		paths := make([]string, len(ents))
		for i, en := range ents {
			paths[i] = filepath.Join(dir, en.Name())
		}
		before := readStats(t, m.Dir)
		e.px.Reset()
		null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("cat", paths...)
		cmd.Stdout = null
		start := time.Now()
		err = cmd.Run()
		d := time.Since(start)
		null.Close()
		if err != nil {
			t.Fatalf("cat: %v", err)
		}
		st := e.px.Stats()
		after := readStats(t, m.Dir)
		speedup := serialD.Seconds() / d.Seconds()
		goal := "met"
		if speedup < 10 {
			goal = "not met"
		}
		e.row("16. cat of 2,000 files of 100 KiB in listing order, listed, cold", fmt.Sprintf("%.2f s (%.2f ms a file)", d.Seconds(), float64(d)/1e6/smallFiles),
			fmt.Sprintf("%.2f s (%d GETs at a time)", limitD.Seconds(), smallParallel), fmt.Sprintf("%.2f", limitD.Seconds()/d.Seconds()),
			fmt.Sprintf("goal >= 10x faster than one GET after another (%.2f s): %.1fx, %s; fetched/read %.3f; per file the mount sent %.2f GETs, %.2f HEADs, %.2f LISTs; %d files fetched ahead, %d MiB of them never read",
				serialD.Seconds(), speedup, goal, float64(st.GetBytes)/float64(total), float64(st.Gets)/smallFiles, float64(st.Heads)/smallFiles, float64(st.Lists)/smallFiles,
				after["readahead_blocks"]-before["readahead_blocks"], (after["readahead_wasted_bytes"]-before["readahead_wasted_bytes"])>>20))
		m.Stop()
	}

	if e.runs("16c") {
		e.smallFilesInline(keys, serialD)
	}

	if e.runs("16b") {
		m := e.benchMount()
		dir := filepath.Join(m.Dir, "images")
		if _, err := os.ReadDir(dir); err != nil {
			t.Fatal(err)
		}
		e.px.Reset()
		var read int64
		start := time.Now()
		for _, i := range rand.New(rand.NewPCG(16, 2)).Perm(smallFiles) {
			b, err := os.ReadFile(filepath.Join(m.Dir, keys[i]))
			if err != nil {
				t.Fatal(err)
			}
			read += int64(len(b))
		}
		d := time.Since(start)
		st := e.px.Stats()
		amp := float64(st.GetBytes) / float64(read)
		goal := "met"
		if amp > 1.1 {
			goal = "not met"
		}
		e.row("16b. the same files read in a shuffled order, one reader, listed, cold", fmt.Sprintf("%.2f s", d.Seconds()),
			fmt.Sprintf("%.2f s (one GET after another)", serialD.Seconds()), fmt.Sprintf("%.2f", serialD.Seconds()/d.Seconds()),
			fmt.Sprintf("goal fetched/read <= 1.1: %.3f, %s; %d GETs for %d files", amp, goal, st.Gets, smallFiles))
		m.Stop()
	}
}

// smallFilesInline runs workload 16c.
func (e *benchEnv) smallFilesInline(keys []string, serialD time.Duration) {
	t := e.t
	e.px.EmulateTigrisListContent(smallFileSize, func(bucket, key string) ([]byte, error) {
		out, err := client.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
		if err != nil {
			return nil, err
		}
		defer out.Body.Close()
		return io.ReadAll(out.Body)
	})
	defer e.px.EmulateTigrisListContent(0, nil)
	m := e.benchMount("--tigris-list-content", "on")
	start := time.Now()
	if _, err := os.ReadDir(filepath.Join(m.Dir, "images")); err != nil {
		t.Fatal(err)
	}
	listD := time.Since(start)
	e.px.Reset()
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	args := make([]string, len(keys))
	for i, k := range keys {
		args[i] = filepath.Join(m.Dir, k)
	}
	cmd := exec.Command("cat", args...)
	cmd.Stdout = null
	start = time.Now()
	err = cmd.Run()
	d := time.Since(start)
	null.Close()
	if err != nil {
		t.Fatalf("cat: %v", err)
	}
	st := e.px.Stats()
	e.row("16c. 16 with --tigris-list-content on (emulated by the bench proxy)", fmt.Sprintf("%.2f s", d.Seconds()),
		fmt.Sprintf("%.2f s (one GET after another)", serialD.Seconds()), fmt.Sprintf("%.1fx", serialD.Seconds()/d.Seconds()),
		fmt.Sprintf("%d GETs during cat; the listing, which carried the content, took %.2f s (the proxy reads each object from the server to inline it, so this is no measure of Tigris)", st.Gets, listD.Seconds()))
	m.Stop()
}

// getAll fetches every key whole straight from the proxy, conc GETs at a
// time, and returns how long that took.
func (e *benchEnv) getAll(keys []string, conc int) time.Duration {
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range conc {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(keys) {
					return
				}
				out, err := e.direct.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(e.bucket), Key: aws.String(keys[i])})
				if err != nil {
					e.t.Error(err)
					return
				}
				io.Copy(io.Discard, out.Body)
				out.Body.Close()
			}
		})
	}
	wg.Wait()
	return time.Since(start)
}
