package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// TestIsHelperCall: SOURCE MOUNTPOINT [-o OPTIONS] is a mount helper call;
// every bucketfs command (sync and tier among them) is not.
func TestIsHelperCall(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want bool
	}{
		{[]string{"my-bucket", "/mnt/sets", "-o", "rw,allow_other"}, true},
		{[]string{"my-bucket/2024", "/mnt/2024"}, true},
		{[]string{"mount", "b", "/m"}, false},
		{[]string{"warm", "/m/x", "/m/y"}, false},
		{[]string{"restore", "/m/x", "/m/y"}, false},
		{[]string{"sync", "/m"}, false},
		{[]string{"sync", "--timeout", "1m", "/m"}, false},
		{[]string{"tier", "--class", "GLACIER", "/m/x"}, false},
		{[]string{"completion", "bash"}, false},
		{[]string{"--help", "x"}, false},
		{[]string{"version"}, false},
		{[]string{"b"}, false},
	} {
		if got := isHelperCall(tc.args); got != tc.want {
			t.Errorf("isHelperCall(%q) = %v", tc.args, got)
		}
	}
}

// TestHelperArgs: the options mount.fuse3 passes (as seen from mount -t
// fuse.bucketfs) become mount flags; mount(8)'s own are dropped.
func TestHelperArgs(t *testing.T) {
	args, env, fg, err := helperArgs([]string{"my-bucket/pre", "/mnt/sets", "-o",
		"rw,allow_other,endpoint=https://t3.storage.dev,region=auto,cache_dir=/var/cache/bucketfs/sets,cache_size=200GiB,x-systemd.automount,noatime,dev,suid,credentials_file=/etc/bucketfs/creds,log_file=/var/log/b.log"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"--allow-other", "--endpoint=https://t3.storage.dev", "--region=auto", "--cache-dir=/var/cache/bucketfs/sets",
		"--cache-size=200GiB", "--log-file=/var/log/b.log", "my-bucket/pre", "/mnt/sets"}
	if !slices.Equal(args, want) || fg {
		t.Errorf("mount args %q (foreground %v), want %q", args, fg, want)
	}
	if !slices.Equal(env, []string{"AWS_SHARED_CREDENTIALS_FILE=/etc/bucketfs/creds"}) {
		t.Errorf("env %q", env)
	}
	// The translated line parses as a mount command line.
	o, err := parse(t, append([]string{"mount"}, args...)...)
	if err != nil || o.CacheDir != "/var/cache/bucketfs/sets" || !o.AllowOther || o.Bucket != "my-bucket" || o.Prefix != "pre/" {
		t.Errorf("parse: %v %+v", err, o)
	}
	if _, _, fg, _ := helperArgs([]string{"b", "/m", "-f"}); !fg {
		t.Error("-f is not foreground")
	}
	// ro is --read-only; rw, the default, is dropped.
	args, _, _, _ = helperArgs([]string{"b", "/m", "-o", "ro,cache_dir=/c"})
	if !slices.Equal(args, []string{"--read-only", "--cache-dir=/c", "b", "/m"}) {
		t.Errorf("ro: mount args %q", args)
	}
	if o, err := parse(t, append([]string{"mount"}, args...)...); err != nil || !o.ReadOnly {
		t.Errorf("ro: parse %v %+v", err, o)
	}
	args, _, _, _ = helperArgs([]string{"b", "/m", "-o", "cache_dir=/c,write_back,storage_class=standard_ia"})
	if o, err := parse(t, append([]string{"mount"}, args...)...); err != nil || !o.WriteBack || o.StorageClass != "STANDARD_IA" {
		t.Errorf("write options: %q: parse %v %+v", args, err, o)
	}
	for _, bad := range [][]string{{"b", "/m", "-o"}, {"b"}, {"b", "/m", "/x"}, {"b", "/m", "--weird"}} {
		if _, _, _, err := helperArgs(bad); err == nil {
			t.Errorf("helperArgs(%q) accepted", bad)
		}
	}
	// An option bucketfs does not know fails the mount with a clear line.
	args, _, _, _ = helperArgs([]string{"b", "/m", "-o", "bogus_thing=1"})
	if _, err := parse(t, append([]string{"mount"}, args...)...); err == nil {
		t.Error("unknown option accepted")
	}
}

// TestSdNotify: sdNotify sends each state as one datagram to the socket
// NOTIFY_SOCKET names, a path or an abstract socket written with a leading
// @, and leaves NOTIFY_SOCKET set for the notifications that follow.
func TestSdNotify(t *testing.T) {
	for _, tt := range []struct{ name, addr string }{
		{"path", filepath.Join(t.TempDir(), "notify")},
		{"abstract", fmt.Sprintf("@bucketfs-test-notify-%d", os.Getpid())},
	} {
		t.Run(tt.name, func(t *testing.T) {
			addr := tt.addr
			conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: addr, Net: "unixgram"})
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			t.Setenv("NOTIFY_SOCKET", addr)
			for _, state := range []string{"READY=1", "STOPPING=1"} {
				sdNotify(state)
				conn.SetReadDeadline(time.Now().Add(5 * time.Second))
				buf := make([]byte, 64)
				n, err := conn.Read(buf)
				if err != nil {
					t.Fatalf("after sdNotify(%q): %v", state, err)
				}
				if got := string(buf[:n]); got != state {
					t.Errorf("received %q, want %q", got, state)
				}
			}
			if got := os.Getenv("NOTIFY_SOCKET"); got != addr {
				t.Errorf("NOTIFY_SOCKET = %q after sending, want %q", got, addr)
			}
		})
	}
	t.Run("unset", func(t *testing.T) {
		t.Setenv("NOTIFY_SOCKET", "")
		sdNotify("READY=1") // nothing to send to: returns at once
	})
}
