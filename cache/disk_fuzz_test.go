package cache

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// FuzzBlockFile: whatever a block file holds (torn, damaged, another
// key's, planted), reading it either fails or yields exactly the bytes a
// valid file for that key holds (its header page's padding aside); never a
// panic.
func FuzzBlockFile(f *testing.F) {
	dir := f.TempDir()
	d, err := openDisk(DiskConfig{Dir: filepath.Join(dir, "seed"), MaxBytes: 1 << 30}, nil)
	if err != nil {
		f.Fatal(err)
	}
	d.Write(key(1), []byte("hello block"))
	valid, _ := os.ReadFile(d.path(fileName(key(1))))
	d.Close()
	f.Add(valid, 11)
	f.Add(valid[:100], 11)
	f.Add([]byte(diskMagic), 0)
	f.Add(bytes.Repeat([]byte{0}, diskPage+11), 11)
	f.Fuzz(func(t *testing.T, data []byte, n int) {
		if n < 0 || n > 1<<16 {
			return
		}
		p := filepath.Join(t.TempDir(), "block")
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		fh, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		defer fh.Close()
		buf := make([]byte, n)
		if readBlockFile(fh, key(1).String(), buf) != "" {
			return
		}
		// Accepted: the file must be exactly what writing buf would give.
		w, err := openDisk(DiskConfig{Dir: filepath.Join(t.TempDir(), "c"), MaxBytes: 1 << 30}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		w.Write(key(1), buf)
		want, _ := os.ReadFile(w.path(fileName(key(1))))
		// The header page's padding is not read; everything else is.
		k := diskHeaderLen + len(key(1).String())
		if len(data) != len(want) || !bytes.Equal(data[:20], want[:20]) || !bytes.Equal(data[diskHeaderLen:k], want[diskHeaderLen:k]) ||
			!bytes.Equal(data[diskPage:], want[diskPage:]) {
			t.Errorf("accepted a %d-byte file that is not the block's encoding", len(data))
		}
	})
}
