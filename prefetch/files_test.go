package prefetch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bucketfs/bucketfs/store"
)

// smallFiles seeds n files of size bytes into fx's store and returns their
// versions and contents.
func smallFiles(t *testing.T, fx *fixture, n, size int) ([]store.Version, [][]byte) {
	t.Helper()
	var vs []store.Version
	var data [][]byte
	for i := range n {
		b := bytes.Repeat([]byte{byte(i)}, size)
		b[0] = byte(i >> 8)
		key := fmt.Sprintf("small/%04d", i)
		fx.st.Seed("b", key, b)
		o, err := fx.st.Head(context.Background(), "b", key)
		if err != nil {
			t.Fatal(err)
		}
		vs = append(vs, store.Version{Bucket: "b", Key: key, ETag: o.ETag, Size: o.Size})
		data = append(data, b)
	}
	return vs, data
}

// landed waits until the fetches ahead of vs have ended.
func landed(t *testing.T, m *Manager, vs []store.Version) {
	t.Helper()
	for _, v := range vs {
		m.ahead.mu.Lock()
		a := m.ahead.files[v]
		m.ahead.mu.Unlock()
		if a == nil {
			continue
		}
		// Wait returns once the bytes are there, a moment before the
		// flight ends.
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
			if done, _ := a.f.Done(); done {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: fetch ahead still under way after 5s", v.Key)
			}
		}
	}
}

// readWhole opens v and reads it whole, as cat does, checking the bytes.
func readWhole(t *testing.T, m *Manager, v store.Version, want []byte) {
	t.Helper()
	r := m.NewReader(v)
	defer r.Close()
	buf := make([]byte, 128<<10)
	n, err := r.ReadAt(context.Background(), buf, 0)
	if err != nil {
		t.Fatalf("%s: %v", v.Key, err)
	}
	if !bytes.Equal(buf[:n], want) {
		t.Fatalf("%s: read %d bytes that differ from the object's %d", v.Key, n, len(want))
	}
}

// TestFetchAheadHandedOver: a file fetched ahead is read by its open
// without another GET, with the object's exact bytes, and its hold goes
// back to the budget when the file is closed.
func TestFetchAheadHandedOver(t *testing.T) {
	fx := newFixture(t, 1, 0, 64*mib)
	vs, data := smallFiles(t, fx, 10, 100<<10)
	for _, v := range vs {
		if !fx.m.FetchAhead(v) {
			t.Fatal("FetchAhead refused with an empty budget")
		}
	}
	landed(t, fx.m, vs)
	gets := fx.st.Calls("GetObject")
	if gets != 10 {
		t.Fatalf("%d GETs for 10 files fetched ahead", gets)
	}
	if used := fx.m.Budget().Used(); used != 10*100<<10 {
		t.Fatalf("budget holds %d bytes for 10 files of 100 KiB ahead", used)
	}
	for i, v := range vs {
		readWhole(t, fx.m, v, data[i])
	}
	if got := fx.st.Calls("GetObject"); got != gets {
		t.Fatalf("reading the files fetched ahead sent %d more GETs", got-gets)
	}
	fx.budgetReturns(t)
	if w := fx.m.Stats.ReadaheadWasted.Load(); w != 0 {
		t.Fatalf("%d bytes counted wasted, every file was read", w)
	}
}

// TestFetchAheadDropped: dropping files fetched ahead cancels GETs that
// have not answered and gives their budget back; files larger than a block
// are not fetched.
func TestFetchAheadDropped(t *testing.T) {
	fx := newFixture(t, 1, 0, 64*mib)
	vs, _ := smallFiles(t, fx, 4, 1000)
	fx.st.SetLatency(time.Hour)
	for _, v := range vs {
		fx.m.FetchAhead(v)
	}
	big := store.Version{Bucket: "b", Key: "obj", ETag: fx.v.ETag, Size: bs + 1}
	fx.m.FetchAhead(big)
	if held := fx.m.aheadHeld(); held != 4000 {
		t.Fatalf("%d bytes held ahead, want 4000 (the large file is not fetched)", held)
	}
	for _, v := range vs {
		fx.m.DropAhead(v)
	}
	fx.settle(t)
	fx.budgetReturns(t)
}

// TestFetchAheadChanged: a file rewritten after it was listed fails its
// fetch ahead (If-Match) and is not handed to the open of the old version,
// whose read then fails as any read of a changed object does; the open of
// the new version reads the new bytes.
func TestFetchAheadChanged(t *testing.T) {
	fx := newFixture(t, 1, 0, 64*mib)
	vs, _ := smallFiles(t, fx, 1, 5000)
	fresh := []byte("the new content")
	fx.st.Seed("b", vs[0].Key, fresh)
	fx.m.FetchAhead(vs[0])
	landed(t, fx.m, vs)
	r := fx.m.NewReader(vs[0])
	_, err := r.ReadAt(context.Background(), make([]byte, 5000), 0)
	r.Close()
	if !errors.Is(err, store.ErrPreconditionFailed) {
		t.Fatalf("read of the old version: %v, want a precondition failure", err)
	}
	o, _ := fx.st.Head(context.Background(), "b", vs[0].Key)
	readWhole(t, fx.m, store.Version{Bucket: "b", Key: vs[0].Key, ETag: o.ETag, Size: o.Size}, fresh)
	fx.budgetReturns(t)
}

// TestFetchAheadBounds: files ahead leave the budget's reserve free (the
// caller is told to stop) and never have more GETs in flight than MaxGets.
func TestFetchAheadBounds(t *testing.T) {
	fx := newFixture(t, 1, 0, 8*mib)
	vs, _ := smallFiles(t, fx, 100, 200<<10)
	fx.st.SetLatency(20 * time.Millisecond)
	var peak atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			peak.Store(max(peak.Load(), fx.m.Stats.InflightGets.Load()))
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Microsecond):
			}
		}
	}()
	accepted := 0
	for _, v := range vs {
		if !fx.m.FetchAhead(v) {
			break
		}
		accepted++
	}
	if free := fx.m.Budget().Capacity() - fx.m.Budget().Used(); free < fx.m.reserve {
		t.Fatalf("%d budget bytes free after fetching ahead, the reserve is %d", free, fx.m.reserve)
	}
	if accepted == 0 || accepted == len(vs) {
		t.Fatalf("%d of %d files accepted with a budget of 8 MiB", accepted, len(vs))
	}
	landed(t, fx.m, vs)
	close(stop)
	<-done
	if p := peak.Load(); p > int64(fx.o.MaxGets) {
		t.Fatalf("%d GETs in flight, MaxGets is %d", p, fx.o.MaxGets)
	}
	if err := fx.m.checkInvariants(); err != nil {
		t.Fatal(err)
	}
	for _, v := range vs[:accepted] {
		fx.m.DropAhead(v)
	}
	fx.budgetReturns(t)
}

// TestFetchAheadClose: closing the manager drops files still held.
func TestFetchAheadClose(t *testing.T) {
	fx := newFixture(t, 1, 0, 64*mib)
	vs, _ := smallFiles(t, fx, 3, 1000)
	fx.st.SetLatency(time.Hour)
	for _, v := range vs {
		fx.m.FetchAhead(v)
	}
	fx.m.closeAhead()
	fx.settle(t)
	fx.budgetReturns(t)
}

// TestOfferContent: content a listing carried is read with no GET; content
// of another size than the version's is ignored.
func TestOfferContent(t *testing.T) {
	fx := newFixture(t, 1, 0, 64*mib)
	vs, data := smallFiles(t, fx, 2, 3000)
	fx.m.OfferContent(vs[0], data[0])
	fx.m.OfferContent(vs[1], data[1][:100])
	readWhole(t, fx.m, vs[0], data[0])
	if g := fx.st.Calls("GetObject"); g != 0 {
		t.Fatalf("%d GETs reading a file whose content the listing carried", g)
	}
	readWhole(t, fx.m, vs[1], data[1])
	if g := fx.st.Calls("GetObject"); g != 1 {
		t.Fatalf("%d GETs after reading a file whose offered content had the wrong size, want 1", g)
	}
}
