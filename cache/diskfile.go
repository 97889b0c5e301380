package cache

// The disk tier's on-disk format: block files, their checksums, and
// writing them with O_DIRECT.

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"sync"
	"time"
	"unsafe"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

const (
	diskMagic     = "BFSBLK03"
	diskHeaderLen = 24 // magic, key length, data length, CRC-32C
	// diskPage is where a block's bytes start; header and key fit before.
	diskPage = 4096
	// formatFile holds formatLine; a directory without it is not ours,
	// whatever else it holds.
	formatFile = "BUCKETFS-CACHE"
	// formatLine names the layout. Format 3 keys blocks by their byte
	// range; a directory of another format is emptied of bucketfs's own
	// files and started afresh.
	formatLine  = "bucketfs block cache, format 3\n"
	cacheDirTag = "Signature: 8a477f597d28d172789f06886806bc55\n" +
		"# This directory is a bucketfs block cache. Its files can be deleted\n" +
		"# while no bucketfs uses it; see https://bford.info/cachedir/\n"
	// touchEvery is how stale a file's mtime may get before a read
	// refreshes it, so recency survives restarts at little cost.
	touchEvery = time.Hour
	// maxHits caps an entry's hit count: how many times eviction passes
	// over a block read often before it may go.
	maxHits = 3
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// keySum starts a block file's checksum: CRC-32C of the key, continued
// over the data.
func keySum(key string) uint32 { return crc32.Checksum([]byte(key), crcTable) }

// diskSum is the checksum a block file holds for key and data.
func diskSum(key string, data []byte) uint32 { return crc32.Update(keySum(key), crcTable, data) }

// fileName is where block k lives, relative to blocks/.
func fileName(k Key) string {
	sum := sha256.Sum256([]byte(k.String()))
	h := hex.EncodeToString(sum[:])
	return h[:2] + "/" + h[2:]
}

func (d *Disk) path(name string) string { return filepath.Join(d.dir, "blocks", name) }

// Read fills buf with block k, whose size is len(buf), and reports whether
// it could: false when the block has no file or its file is damaged (the
// file is then deleted and the damage logged).
func (d *Disk) Read(k Key, buf []byte) bool {
	name := fileName(k)
	keyStr := k.String()
	f, err := os.Open(d.path(name))
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			d.log.WithError(err).Warn("disk cache: cannot open block file")
		}
		d.forget(name)
		d.Stats.Misses.Add(1)
		return false
	}
	defer f.Close()
	if reason := readBlockFile(f, keyStr, buf); reason != "" {
		d.Stats.Corrupt.Add(1)
		d.log.WithFields(logrus.Fields{"bucket": k.Bucket, "key": k.Object, "block": k.Index, "file": d.path(name), "problem": reason}).
			Warn("disk cache: damaged block file dropped; fetching the block again")
		d.remove(name)
		d.Stats.Misses.Add(1)
		return false
	}
	d.Stats.Hits.Add(1)
	d.touch(name, f)
	return true
}

// headPool holds buffers for block file headers.
var headPool = sync.Pool{New: func() any { return make([]byte, diskPage) }}

// readBlockFile reads a block file holding key into buf and checks it. It
// returns what is wrong with the file, or "".
func readBlockFile(f *os.File, key string, buf []byte) string {
	fi, err := f.Stat()
	if err != nil {
		return err.Error()
	}
	if fi.Size() != int64(diskPage+len(buf)) {
		return fmt.Sprintf("%d bytes long, want %d", fi.Size(), diskPage+len(buf))
	}
	head := headPool.Get().([]byte)
	defer headPool.Put(head)
	if n, err := f.ReadAt(head, 0); n < diskPage {
		return fmt.Sprintf("short header (%v)", err)
	}
	if string(head[:8]) != diskMagic {
		return "bad magic"
	}
	klen := binary.LittleEndian.Uint32(head[8:])
	dlen := binary.LittleEndian.Uint32(head[12:])
	sum := binary.LittleEndian.Uint32(head[16:])
	if int(klen) != len(key) || string(head[diskHeaderLen:diskHeaderLen+len(key)]) != key {
		return "holds another key"
	}
	if int(dlen) != len(buf) {
		return fmt.Sprintf("holds %d bytes, want %d", dlen, len(buf))
	}
	if n, err := f.ReadAt(buf, diskPage); n < len(buf) {
		return fmt.Sprintf("short data (%v)", err)
	}
	if diskSum(key, buf) != sum {
		return "checksum mismatch"
	}
	return ""
}

// writeFile writes a block file for key holding data, whose checksum is
// sum (diskSum).
func (d *Disk) writeFile(name, key string, data []byte, sum uint32) error {
	f, err := os.CreateTemp(filepath.Join(d.dir, "tmp"), "block-")
	if err != nil {
		return err
	}
	head := alignedPage()
	copy(head, diskMagic)
	binary.LittleEndian.PutUint32(head[8:], uint32(len(key)))
	binary.LittleEndian.PutUint32(head[12:], uint32(len(data)))
	copy(head[diskHeaderLen:], key)
	binary.LittleEndian.PutUint32(head[16:], sum)
	// Whole pages from page-aligned buffers go straight to the disk
	// (O_DIRECT): no copy into the page cache and no writeback to pay for
	// while the read that fetched them goes on.
	direct := aligned(data) && setDirect(f, true) == nil
	_, err = f.Write(head)
	if err == nil {
		_, err = f.Write(data)
	}
	if direct && err != nil {
		setDirect(f, false)
		if _, serr := f.Seek(0, 0); serr == nil {
			if _, err = f.Write(head); err == nil {
				_, err = f.Write(data)
			}
		}
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	final := d.path(name)
	if err == nil {
		err = os.Rename(f.Name(), final)
		if errors.Is(err, os.ErrNotExist) {
			if err = os.MkdirAll(filepath.Dir(final), 0o700); err == nil {
				err = os.Rename(f.Name(), final)
			}
		}
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

// alignedPage returns a zeroed page-aligned buffer of one page.
func alignedPage() []byte {
	b := make([]byte, 2*diskPage)
	off := int(uintptr(unsafe.Pointer(&b[0])) % diskPage)
	if off != 0 {
		off = diskPage - off
	}
	return b[off : off+diskPage : off+diskPage]
}

// aligned reports whether buf can be written with O_DIRECT.
func aligned(buf []byte) bool {
	return len(buf) > 0 && len(buf)%diskPage == 0 && uintptr(unsafe.Pointer(&buf[0]))%diskPage == 0
}

// setDirect turns O_DIRECT on or off for f.
func setDirect(f *os.File, on bool) error {
	fd := int(f.Fd())
	flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil {
		return err
	}
	if on {
		flags |= unix.O_DIRECT
	} else {
		flags &^= unix.O_DIRECT
	}
	_, err = unix.FcntlInt(uintptr(fd), unix.F_SETFL, flags)
	return err
}
