package fs

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/bucketfs/bucketfs/store"
)

// TestRestoreWatcherAtScale watches 2,000 running restores on one mount:
// one goroutine serves them all, HEADs never exceed the rate, and once the
// restores complete every file turns readable and leaves the watcher.
func TestRestoreWatcherAtScale(t *testing.T) {
	const files, rate = 2000, 400.0
	f := store.NewFake()
	cfg, _, _ := testConfig(f, "b")
	cfg.Now = time.Now
	cfg.RestorePoll = 50 * time.Millisecond
	cfg.RestoreCheckRate = rate
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg.Ctx = ctx
	root := testDir(t, cfg)

	before := runtime.NumGoroutine()
	nodes := make([]*fileNode, files)
	for i := range nodes {
		key := fmt.Sprintf("set-%04d.mp3", i)
		f.Seed("b", key, []byte("archived"))
		f.Archive("b", key, "GLACIER")
		if _, err := f.Restore(ctx, store.RestoreInput{Bucket: "b", Key: key, Days: 1}); err != nil {
			t.Fatal(err)
		}
		o, err := f.Head(ctx, "b", key)
		if err != nil {
			t.Fatal(err)
		}
		nodes[i] = &fileNode{base: base{m: root.m}, bucket: "b", key: key, inoKey: key}
		nodes[i].setMeta(*o, time.Now(), true)
	}
	if n := root.m.restores.count(); n != files {
		t.Fatalf("%d files watched, want %d", n, files)
	}
	if extra := runtime.NumGoroutine() - before; extra > 3 {
		t.Errorf("%d goroutines more while watching %d restores, want at most 3", extra, files)
	}

	// The rate holds while checks are due for every file at once.
	heads0, start := f.Calls("HeadObject"), time.Now()
	time.Sleep(500 * time.Millisecond)
	heads, elapsed := f.Calls("HeadObject")-heads0, time.Since(start)
	if limit := int64(rate*elapsed.Seconds()) + 2; heads > limit {
		t.Errorf("%d HEADs in %v, above the rate's %d", heads, elapsed, limit)
	}
	if heads < int64(rate*elapsed.Seconds()/4) {
		t.Errorf("only %d HEADs in %v at a rate of %v/s: the watcher stalls", heads, elapsed, rate)
	}

	for _, n := range nodes {
		f.FinishRestore("b", n.key, time.Now().Add(24*time.Hour))
	}
	deadline := time.Now().Add(30 * time.Second)
	for root.m.restores.count() > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := root.m.restores.count(); n > 0 {
		t.Fatalf("%d files still watched after their restores completed", n)
	}
	for _, n := range nodes {
		if s, _ := n.state(); s != restored {
			t.Fatalf("%s is %v after its restore completed, want restored", n.key, s)
		}
	}
}

// TestRestoreWatcherForgets checks that a file the kernel forgets leaves
// the watcher: a new node for the key is watched instead, never both.
func TestRestoreWatcherForgets(t *testing.T) {
	f := store.NewFake()
	f.Seed("b", "k", []byte("x"))
	f.Archive("b", "k", "GLACIER")
	cfg, _, _ := testConfig(f, "b")
	cfg.Now = time.Now
	cfg.RestorePoll = time.Hour
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg.Ctx = ctx
	root := testDir(t, cfg)
	if _, err := f.Restore(ctx, store.RestoreInput{Bucket: "b", Key: "k", Days: 1}); err != nil {
		t.Fatal(err)
	}
	o, _ := f.Head(ctx, "b", "k")
	for range 3 {
		n := &fileNode{base: base{m: root.m}, bucket: "b", key: "k", inoKey: "k"}
		n.setMeta(*o, time.Now(), true)
		if c := root.m.restores.count(); c != 1 {
			t.Fatalf("%d files watched, want 1", c)
		}
		n.OnForget()
		if c := root.m.restores.count(); c != 0 {
			t.Fatalf("%d files watched after the node was forgotten, want 0", c)
		}
	}
}
