package fs

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/bucketfs/bucketfs/store"
)

// TestListingsBoundedInBytes lists eight directories of 100 names each with
// a budget that holds about three listings: the bytes held never pass the
// budget, the listings read longest ago are dropped first (listed again from
// the store when read), and the most recent stay.
func TestListingsBoundedInBytes(t *testing.T) {
	f := store.NewFake()
	for d := range 8 {
		for i := range 100 {
			f.Seed("b", fmt.Sprintf("d%d/file-%03d.mp3", d, i), nil)
		}
	}
	cfg := Config{Store: f, Bucket: "b", Log: discardLog(), MetadataTTL: time.Hour, Counters: &Counters{}}
	root := testDir(t, cfg)
	dirs := make([]*dirNode, 8)
	for i := range dirs {
		dirs[i] = &dirNode{base: base{m: root.m}, bucket: "b", prefix: fmt.Sprintf("d%d/", i)}
	}
	if _, _, err := dirs[0].listing(context.Background()); err != nil {
		t.Fatal(err)
	}
	one := root.m.listings.usedBytes()
	root.m.listings.budget = 3*one + one/2
	for _, d := range dirs[1:] {
		if _, _, err := d.listing(context.Background()); err != nil {
			t.Fatal(err)
		}
		if used := root.m.listings.usedBytes(); used > root.m.listings.budget {
			t.Fatalf("listings hold %d bytes, budget %d", used, root.m.listings.budget)
		}
		// The daemon's memory limit follows the gauge.
		if g, used := cfg.Counters.ListingBytes.Load(), root.m.listings.usedBytes(); g != used {
			t.Fatalf("ListingBytes %d, listings hold %d", g, used)
		}
	}
	held := func(d *dirNode) bool { d.mu.Lock(); defer d.mu.Unlock(); return d.entries != nil }
	for i, d := range dirs {
		if want := i >= 5; held(d) != want {
			t.Errorf("d%d holds its listing: %v, want %v", i, held(d), want)
		}
	}
	lists := f.Calls("ListObjectsV2")
	if _, names, err := dirs[0].listing(context.Background()); err != nil || len(names) != 100 {
		t.Fatalf("relisting a dropped directory: %d names, %v", len(names), err)
	}
	if f.Calls("ListObjectsV2") == lists {
		t.Error("a dropped listing was served without listing again")
	}
}
