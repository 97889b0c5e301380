// Command demo is `make demo`: it starts a local S3 server (versitygw,
// installed on first use), seeds a bucket with sample DJ sets, builds
// bucketfs, mounts the bucket at ./mnt, and unmounts on Ctrl-C.
package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/bucketfs/bucketfs/integration/harness"
)

const bucket = "radio"

// sample is one object of the demo bucket.
type sample struct {
	key  string
	data func() []byte
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run() error {
	root, err := harness.ModuleRoot()
	if err != nil {
		return err
	}
	work := filepath.Join(root, ".demo")
	mnt := filepath.Join(root, "mnt")
	if ok, _ := harness.IsMounted(mnt); ok {
		fmt.Println("clearing a mount left at ./mnt by an earlier run")
		syscall.Unmount(mnt, syscall.MNT_DETACH)
	}
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		return err
	}

	fmt.Println("starting the local S3 server (versitygw)...")
	srv, err := harness.StartServer(filepath.Join(work, "s3"))
	if err != nil {
		return err
	}
	defer srv.Stop()

	fmt.Println("seeding bucket", bucket, "...")
	if err := seed(harness.Client(srv.Endpoint)); err != nil {
		return err
	}
	fmt.Println("building bucketfs...")
	bin, err := harness.BuildBinary(filepath.Join(root, "bin"))
	if err != nil {
		return err
	}

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	args := []string{"--endpoint", srv.Endpoint, "--path-style", "--cache-dir", filepath.Join(work, "cache"), "--cache-size", "1GiB", bucket}
	m, err := harness.StartMount(bin, harness.Env(srv.Endpoint), mnt, args...)
	if err != nil {
		return err
	}
	fmt.Printf(`
bucketfs has mounted s3://%[1]s at ./mnt (server %[2]s).
Try, in another terminal:

  ls -lR mnt                                   # the tree, sizes and dates from S3
  cat "mnt/sets/2024/2024-11-02 Night Shift - DJ Kora.txt"
  dd if="mnt/sets/2024/2024-12-14 Warehouse Live - Anouk B.mp3" of=/dev/null bs=1M
  mpv "mnt/sets/2025/2025-01-18 Sunday Chill - Team Tide.mp3"   # plays (silence)
  df -h mnt; echo hello > mnt/hello.txt        # a write: an object in the bucket when closed
  bin/bucketfs warm mnt/sets                   # fetch every set into the disk cache (.demo/cache)
  getfattr -d "mnt/sets/2024/2024-11-02 Night Shift - DJ Kora.txt"   # S3 attributes, bytes cached

The same command against Tigris:
  bucketfs mount --endpoint https://t3.storage.dev --region auto BUCKET /some/dir

Press Ctrl-C to unmount and stop.
`, bucket, srv.Endpoint)

	exited := make(chan error, 1)
	go func() { exited <- m.Wait(24 * 365 * time.Hour) }()
	select {
	case <-sigs:
		fmt.Println("\nunmounting...")
		if err := m.Stop(); err != nil {
			return fmt.Errorf("bucketfs exit: %v\n%s", err, m.Log())
		}
	case err := <-exited:
		if err != nil {
			return fmt.Errorf("bucketfs exited: %v\n%s", err, m.Log())
		}
	}
	fmt.Println("unmounted; bye")
	return nil
}

// seed creates the bucket and uploads what is missing.
func seed(c *s3.Client) error {
	ctx := context.Background()
	if err := harness.CreateBucket(ctx, c, bucket); err != nil {
		var owned interface{ ErrorCode() string }
		if !errors.As(err, &owned) || (owned.ErrorCode() != "BucketAlreadyOwnedByYou" && owned.ErrorCode() != "BucketAlreadyExists") {
			return err
		}
	}
	sets := []struct {
		path, title, artist string
		mib                 int
	}{
		{"sets/2024/2024-11-02 Night Shift - DJ Kora", "Night Shift", "DJ Kora", 48},
		{"sets/2024/2024-12-14 Warehouse Live - Anouk B", "Warehouse Live", "Anouk B", 64},
		{"sets/2025/2025-01-18 Sunday Chill - Team Tide", "Sunday Chill", "Team Tide", 32},
	}
	var samples []sample
	for _, s := range sets {
		samples = append(samples,
			sample{s.path + ".mp3", func() []byte { return silentMP3(s.mib<<20, s.title, s.artist) }},
			sample{s.path + ".txt", func() []byte { return tracklist(s.title, s.artist) }},
		)
	}
	samples = append(samples,
		sample{"README.txt", func() []byte {
			return []byte("Community radio archive, served by bucketfs.\nSets live under sets/YEAR/, artwork under artwork/.\n")
		}},
		sample{"artwork/covers/night-shift.txt", func() []byte { return []byte("(cover art placeholder)\n") }},
		sample{"artwork/covers/warehouse-live.txt", func() []byte { return []byte("(cover art placeholder)\n") }},
		sample{"artwork/logos/station.txt", func() []byte { return []byte("(logo placeholder)\n") }},
	)
	for _, s := range samples {
		if _, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(s.key)}); err == nil {
			continue
		}
		if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(s.key), Body: bytes.NewReader(s.data())}); err != nil {
			return fmt.Errorf("upload %s: %w", s.key, err)
		}
	}
	return nil
}

func tracklist(title, artist string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s - %s\n\n", artist, title)
	for i := 1; i <= 12; i++ {
		fmt.Fprintf(&b, "%02d. Track %d\n", i, i)
	}
	return b.Bytes()
}

// silentMP3 builds a playable MP3 of about size bytes: an ID3v2 header,
// silent MPEG-1 Layer III frames (320 kbit/s, 44.1 kHz) and an ID3v1 tag
// at the end, where players look for it.
func silentMP3(size int, title, artist string) []byte {
	const frameLen = 1044 // 144 * 320000 / 44100, no padding
	out := make([]byte, 0, size+frameLen)
	out = append(out, 'I', 'D', '3', 4, 0, 0, 0, 0, 0, 0) // empty ID3v2.4 tag
	frame := make([]byte, frameLen)
	copy(frame, []byte{0xFF, 0xFB, 0xE0, 0xC4}) // sync, MPEG-1 L3, 320k, 44.1k, mono
	for len(out)+frameLen <= size-128 {
		out = append(out, frame...)
	}
	tag := make([]byte, 128)
	copy(tag, "TAG")
	copy(tag[3:33], title)
	copy(tag[33:63], artist)
	copy(tag[63:93], "bucketfs demo")
	copy(tag[93:97], "2025")
	tag[127] = 255 // genre: none
	return append(out, tag...)
}
