package integration

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// An fsx-like exerciser: random writes, truncates and reads on one file of
// the mount, mirrored on a local file, every read compared.

// fsxSeed is the seed of the runs; BUCKETFS_FSX_SEED picks another.
func fsxSeed(t *testing.T) uint64 {
	t.Helper()
	if s := os.Getenv("BUCKETFS_FSX_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("BUCKETFS_FSX_SEED=%q: %v", s, err)
		}
		return v
	}
	return 20240611
}

// fsxPair is a mounted file and its local twin.
type fsxPair struct {
	t           *testing.T
	r           *rand.Rand    // the operations
	bytes       *rand.ChaCha8 // the bytes written
	mnt, local  *os.File
	mntPath     string
	size        int64 // the local file's size
	maxSize     int64
	ops, checks int
	log         []string // the last operations, for a failure's message
}

// step records an operation for the failure message.
func (x *fsxPair) step(format string, args ...any) {
	x.ops++
	x.log = append(x.log, fmt.Sprintf("%d: "+format, append([]any{x.ops}, args...)...))
	if len(x.log) > 20 {
		x.log = x.log[1:]
	}
}

func (x *fsxPair) fatalf(format string, args ...any) {
	x.t.Helper()
	x.t.Fatalf("after op %d: "+format+"\nlast operations:\n%s", append([]any{x.ops}, append(args, joinLines(x.log))...)...)
}

func joinLines(l []string) string {
	var b bytes.Buffer
	for _, s := range l {
		b.WriteString("  " + s + "\n")
	}
	return b.String()
}

// length draws an operation's length: mostly small, some up to 256 KiB,
// a few up to 3 MiB.
func (x *fsxPair) length() int64 {
	switch v := x.r.IntN(100); {
	case v < 70:
		return 1 + x.r.Int64N(4096)
	case v < 95:
		return 1 + x.r.Int64N(256<<10)
	default:
		return 1 + x.r.Int64N(3<<20)
	}
}

// write does one pwrite at a random offset (a fifth of them past the end,
// leaving a hole) on both files.
func (x *fsxPair) write() {
	x.t.Helper()
	n := x.length()
	var off int64
	if x.r.IntN(5) == 0 || x.size == 0 {
		off = x.size + x.r.Int64N(1<<20)
	} else {
		off = x.r.Int64N(x.size)
	}
	if off+n > x.maxSize {
		off = max(0, x.maxSize-n)
	}
	buf := make([]byte, n)
	x.bytes.Read(buf)
	x.step("pwrite %d bytes at %d", n, off)
	if _, err := x.local.WriteAt(buf, off); err != nil {
		x.t.Fatal(err)
	}
	if m, err := x.mnt.WriteAt(buf, off); err != nil || m != len(buf) {
		x.fatalf("pwrite of %d bytes at %d: %d, %v", n, off, m, err)
	}
	x.size = max(x.size, off+n)
}

// truncate sets both files to a random size, down or up.
func (x *fsxPair) truncate() {
	x.t.Helper()
	var size int64
	switch x.r.IntN(3) {
	case 0:
		size = x.r.Int64N(x.size + 1) // down, anywhere
	case 1:
		size = max(0, x.size-x.r.Int64N(64<<10)) // down a little
	default:
		size = min(x.maxSize, x.size+x.r.Int64N(4<<20)) // up: zeros
	}
	x.step("ftruncate to %d (from %d)", size, x.size)
	if err := x.local.Truncate(size); err != nil {
		x.t.Fatal(err)
	}
	if err := x.mnt.Truncate(size); err != nil {
		x.fatalf("ftruncate to %d: %v", size, err)
	}
	x.size = size
}

// read preads a random range from both files and compares; now and then
// with the kernel's cached pages dropped first, so bucketfs serves it.
func (x *fsxPair) read() {
	x.t.Helper()
	n := x.length()
	off := x.r.Int64N(x.size + 4096)
	if x.r.IntN(8) == 0 {
		unix.Fadvise(int(x.mnt.Fd()), 0, 0, unix.FADV_DONTNEED)
	}
	x.step("pread %d bytes at %d", n, off)
	want := make([]byte, n)
	wn, werr := x.local.ReadAt(want, off)
	got := make([]byte, n)
	gn, gerr := x.mnt.ReadAt(got, off)
	if werr == io.EOF {
		werr = nil
	}
	if gerr == io.EOF {
		gerr = nil
	}
	if gerr != nil || werr != nil || gn != wn || !bytes.Equal(got[:gn], want[:wn]) {
		i := 0
		for i < min(gn, wn) && got[i] == want[i] {
			i++
		}
		x.fatalf("pread %d at %d (size %d): %d bytes, %v; want %d bytes, %v; first difference at byte %d", n, off, x.size, gn, gerr, wn, werr, i)
	}
	x.checks++
}

// stat compares the mounted file's size with the local one's.
func (x *fsxPair) stat() {
	x.t.Helper()
	x.step("stat")
	fi, err := os.Stat(x.mntPath)
	if err != nil || fi.Size() != x.size {
		x.fatalf("stat: %v %v, want size %d", fi, err, x.size)
	}
}

// TestFsx runs random operations on one mounted file opened O_RDWR,
// mirrored on a local file: pwrite at random offsets and lengths (holes
// included), ftruncate down and up, pread compared byte for byte with the
// local file (now and then with the kernel's pages dropped), stat of the
// size, and early on and then every 750 operations fsync, after which the object read
// through the S3 API must equal the local file. After close, the object,
// and the file read through a new open, equal the local file. It runs on
// a new file with the default 8 MiB parts, and on an existing 16 MiB
// object with 5 MiB parts, so writes and truncates cross part boundaries
// and untouched ranges come from the original object. The seed is logged
// (BUCKETFS_FSX_SEED replays another).
func TestFsx(t *testing.T) {
	seed := fsxSeed(t)
	for i, c := range []struct {
		name    string
		initial int
		args    []string
	}{
		{"new file, 8MiB parts", 0, nil},
		{"existing object, 5MiB parts", 16 << 20, []string{"--write-part-size", "5MiB"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			seed := seed + uint64(i)
			t.Logf("seed %d (BUCKETFS_FSX_SEED=%d replays it)", seed, seed-uint64(i))
			runFsx(t, seed, 3000, c.initial, c.args)
		})
	}
}

// runFsx runs ops random operations on a file that starts as an object of
// initial random bytes, or as a new file when initial is 0.
func runFsx(t *testing.T, seed uint64, ops, initial int, args []string) {
	var key [32]byte
	for i := range 8 {
		key[i] = byte(seed >> (8 * i))
	}
	x := &fsxPair{t: t, r: rand.New(rand.NewPCG(seed, seed^0x5eed)), bytes: rand.NewChaCha8(key), maxSize: 24 << 20}
	data := make([]byte, initial)
	x.bytes.Read(data)
	objects := map[string][]byte{}
	flags := os.O_RDWR | os.O_CREATE | os.O_EXCL
	if initial > 0 {
		objects["fsx.bin"] = data
		flags = os.O_RDWR
	}
	b := newBucket(t, objects)
	m, px := writeMount(t, b, args...)
	x.mntPath = filepath.Join(m.Dir, "fsx.bin")
	var err error
	if x.local, err = os.Create(filepath.Join(t.TempDir(), "fsx.bin")); err != nil {
		t.Fatal(err)
	}
	defer x.local.Close()
	if _, err := x.local.Write(data); err != nil {
		t.Fatal(err)
	}
	x.size = int64(initial)
	if x.mnt, err = os.OpenFile(x.mntPath, flags, 0o644); err != nil {
		t.Fatal(err)
	}
	defer x.mnt.Close()
	start := time.Now()
	syncs := 0
	maxSeen := x.size
	for i := range ops {
		switch v := x.r.IntN(100); {
		case v < 45:
			x.write()
		case v < 52:
			x.truncate()
		case v < 95:
			x.read()
		default:
			x.stat()
		}
		maxSeen = max(maxSeen, x.size)
		if i == 60 || i == 250 || i%750 == 749 {
			x.step("fsync")
			if err := x.mnt.Sync(); err != nil {
				x.fatalf("fsync: %v", err)
			}
			syncs++
			x.compareStored(b)
		}
	}
	x.step("close")
	if err := x.mnt.Close(); err != nil {
		x.fatalf("close: %v", err)
	}
	x.compareStored(b)
	if got, err := preadAll(x.mntPath); err != nil || !bytes.Equal(got, x.localBytes()) {
		t.Errorf("read through a new open after close: %d bytes, %v; want the local file's %d", len(got), err, x.size)
	}
	s := px.Stats()
	t.Logf("%d operations (%d reads compared, %d fsyncs) in %v, largest size %d, final size %d; proxy: %d puts (%d bytes), %d copies, %d completes",
		x.ops, x.checks, syncs, time.Since(start).Round(time.Millisecond), maxSeen, x.size, s.Puts, s.PutBytes, s.Copies, s.Completes)
	checkNoUploads(t, b)
}

// localBytes returns the local file's content.
func (x *fsxPair) localBytes() []byte {
	x.t.Helper()
	b, err := os.ReadFile(x.local.Name())
	if err != nil {
		x.t.Fatal(err)
	}
	return b
}

// compareStored compares the object, read through the S3 API, with the
// local file.
func (x *fsxPair) compareStored(bucket string) {
	x.t.Helper()
	got, err := s3Get(x.t, bucket, "fsx.bin")
	want := x.localBytes()
	if err != nil || !bytes.Equal(got, want) {
		i := 0
		for i < min(len(got), len(want)) && got[i] == want[i] {
			i++
		}
		x.fatalf("the object through the S3 API: %d bytes, %v; want the local file's %d bytes; first difference at byte %d", len(got), err, len(want), i)
	}
}
