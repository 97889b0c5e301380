package csi

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestListen: a unix endpoint's stale socket file is replaced (a driver
// killed with SIGKILL leaves one), a tcp endpoint listens, and other
// schemes are refused.
func TestListen(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "sub", "csi.sock")
	l, err := Listen("unix://" + sock)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close() // the socket file stays, as after kill -9
	if _, err := os.Stat(sock); err != nil {
		t.Fatalf("no stale socket to test with: %v", err)
	}
	l, err = Listen("unix://" + sock)
	if err != nil {
		t.Fatalf("over a stale socket: %v", err)
	}
	l.Close()
	l, err = Listen("tcp://127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	for _, bad := range []string{"http://x", "unix://", "/no/scheme"} {
		if l, err := Listen(bad); err == nil {
			l.Close()
			t.Errorf("Listen(%q) accepted", bad)
		}
	}
}

// TestInstallBinary: the running binary is copied for systemd units to
// run, executable, and an identical copy is left alone (a running daemon
// keeps its file).
func TestInstallBinary(t *testing.T) {
	dir := t.TempDir()
	p, err := InstallBinary(dir)
	if err != nil {
		t.Fatal(err)
	}
	self, _ := os.Executable()
	want, _ := os.ReadFile(self)
	got, _ := os.ReadFile(p)
	fi, _ := os.Stat(p)
	if !bytes.Equal(got, want) || fi.Mode().Perm() != 0o755 {
		t.Fatalf("copy differs or mode %v", fi.Mode())
	}
	old := time.Now().Add(-time.Hour)
	os.Chtimes(p, old, old)
	if _, err := InstallBinary(dir); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(p); !fi.ModTime().Equal(old) {
		t.Error("an identical copy was rewritten")
	}
}

// TestNewConfig: New refuses a configuration that cannot serve.
func TestNewConfig(t *testing.T) {
	m := &fakeMounter{k: newFakeKernel()}
	for _, cfg := range []Config{
		{},
		{Node: true, Mounter: m, StateDir: t.TempDir()},
		{Node: true, NodeID: "n", StateDir: t.TempDir()},
		{Node: true, NodeID: "n", Mounter: m},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
	d, err := New(Config{Controller: true})
	if err != nil || d.cfg.NewStore == nil {
		t.Errorf("controller only: %v", err)
	}
}
