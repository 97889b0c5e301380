package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/bucketfs/bucketfs/integration/harness"
	"github.com/bucketfs/bucketfs/integration/proxy"
	"golang.org/x/sys/unix"
)

// freeAddr returns a free 127.0.0.1 port.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// scrape returns the metrics at addr as "name{labels}" -> value.
func scrape(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET /metrics: %s %s", resp.Status, b)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// readStats returns the daemon's counters from the user.bucketfs.stats
// xattr on the mount root dir.
func readStats(t *testing.T, dir string) map[string]int64 {
	t.Helper()
	buf := make([]byte, 16<<10)
	n, err := unix.Getxattr(dir, "user.bucketfs.stats", buf)
	if err != nil {
		t.Fatalf("stats xattr: %v", err)
	}
	out := map[string]int64{}
	if err := json.Unmarshal(buf[:n], &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestMetrics scrapes --metrics-addr after reads, a missing file, an
// archived file and injected errors.
func TestMetrics(t *testing.T) {
	data := randomBytes(71, 6<<20)
	b := newBucket(t, map[string][]byte{"set.mp3": data, "old.mp3": []byte("old")})
	addr := freeAddr(t)
	cacheDir := filepath.Join(t.TempDir(), "cache")
	m, px := proxiedMount(t, b, "--metrics-addr", addr, "--cache-dir", cacheDir, "--block-size", "1MiB")
	px.Archive(b, "old.mp3", "GLACIER")
	px.SetFaults(proxy.Faults{ErrorRate: 1, ErrorStatus: 503, GetsOnly: true, Count: 2})

	f, err := os.Open(filepath.Join(m.Dir, "set.mp3"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(f)
	if err != nil || len(got) != len(data) {
		t.Fatalf("read: %d bytes, %v", len(got), err)
	}
	os.Stat(filepath.Join(m.Dir, "missing.txt"))
	if _, err := os.ReadFile(filepath.Join(m.Dir, "old.mp3")); err == nil {
		t.Fatal("read of an archived file succeeded")
	}
	mt := scrape(t, addr)
	stats := readStats(t, m.Dir)
	f.Close()
	// One table feeds both: every stats key is a metric of the same name.
	for k := range stats {
		if _, ok := mt["bucketfs_"+k+"_total"]; !ok {
			if _, ok := mt["bucketfs_"+k]; !ok {
				t.Errorf("stats key %s has no metric bucketfs_%s(_total)", k, k)
			}
		}
	}
	for name, check := range map[string]func(float64) bool{
		`bucketfs_s3_requests_total{op="GetObject",outcome="ok"}`:               func(v float64) bool { return v >= 1 },
		`bucketfs_s3_requests_total{op="ListObjectsV2",outcome="ok"}`:           func(v float64) bool { return v >= 1 },
		`bucketfs_s3_request_duration_seconds_count{op="GetObject"}`:            func(v float64) bool { return v >= 1 },
		`bucketfs_s3_request_duration_seconds_bucket{op="GetObject",le="+Inf"}`: func(v float64) bool { return v >= 1 },
		`bucketfs_s3_retries_total`:                                             func(v float64) bool { return v >= 2 },
		`bucketfs_bytes_fetched_total`:                                          func(v float64) bool { return v == float64(len(data)) },
		`bucketfs_bytes_read_total`:                                             func(v float64) bool { return v >= float64(len(data)) },
		`bucketfs_cache_misses_total`:                                           func(v float64) bool { return v >= 6 },
		`bucketfs_disk_misses_total`:                                            func(v float64) bool { return v >= 0 },
		`bucketfs_disk_hits_total`:                                              func(v float64) bool { return v == 0 },
		`bucketfs_readahead_used_blocks_total`:                                  func(v float64) bool { return v >= 1 },
		`bucketfs_readahead_wasted_bytes_total`:                                 func(v float64) bool { return v >= 0 },
		`bucketfs_open_readers`:                                                 func(v float64) bool { return v == 1 },
		`bucketfs_archived_hits_total`:                                          func(v float64) bool { return v >= 1 },
		`bucketfs_s3_connections`:                                               func(v float64) bool { return v >= 1 && v <= 64 },
		`bucketfs_slow_reads_total`:                                             func(v float64) bool { return v >= 0 },
		`bucketfs_random_promoted_total`:                                        func(v float64) bool { return v >= 0 },
		`go_goroutines`:                                                         func(v float64) bool { return v > 0 },
		`process_resident_memory_bytes`:                                         func(v float64) bool { return v > 0 },
	} {
		v, ok := mt[name]
		if !ok || !check(v) {
			t.Errorf("%s = %v (present %v)", name, v, ok)
		}
	}
	notFound := false
	for k, v := range mt {
		if strings.HasPrefix(k, `bucketfs_s3_requests_total{op="HeadObject",outcome="not_found"}`) && v >= 1 {
			notFound = true
		}
	}
	if !notFound {
		t.Errorf("no HeadObject not_found counted: %v", fmt.Sprint(mt))
	}
}

// TestMetricsAddrInUse: a --metrics-addr that cannot be listened on fails
// the mount at start with one line.
func TestMetricsAddrInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	b := newBucket(t, map[string][]byte{"x": []byte("x")})
	out, code := runBucketfs(t, harness.Env(endpoint), append([]string{"mount"}, mountArgs("--metrics-addr", l.Addr().String(), b, t.TempDir())...)...)
	if code == 0 || !strings.Contains(out, "--metrics-addr") || !strings.Contains(out, "address already in use") {
		t.Fatalf("mount with a busy --metrics-addr: exit %d\n%s", code, out)
	}
}
