package compare

import (
	"bytes"
	"errors"
	"image/png"
	"strings"
	"testing"
	"time"
)

var testWorks = []Workload{
	{ID: "seq", Title: "1. sequential read", Short: "1 seq", Unit: "MB/s", Higher: true},
	{ID: "ls", Title: "5. ls -l", Short: "5 ls", Unit: "s"},
	{ID: "ttfb", Title: "4. first byte", Short: "4 ttfb", Unit: "ms"},
}

func testResults() *Results {
	rs := NewResults(testWorks, []string{"bucketfs", "rclone", "s3fs"})
	rs.Add(Result{Tool: "bucketfs", Work: "seq", Value: 200, Status: OK})
	rs.Add(Result{Tool: "rclone", Work: "seq", Value: 100, Status: OK})
	rs.Add(Result{Tool: "s3fs", Work: "seq", Value: 50, Status: Stopped, Cap: 45})
	rs.Add(Result{Tool: "bucketfs", Work: "ls", Value: 60, Status: OK})
	rs.Add(Result{Tool: "rclone", Work: "ls", Value: 30, Status: OK})
	rs.Add(Result{Tool: "s3fs", Work: "ls", Status: Stopped, Cap: 80})
	rs.Add(Result{Tool: "bucketfs", Work: "ttfb", Status: Failed, Err: "WRONG BYTES: the first 128 KiB", Log: "daemon said | this"})
	rs.Add(Result{Tool: "rclone", Work: "ttfb", Status: NotRun, Err: "the run's 15m0s budget was spent"})
	rs.Add(Result{Tool: "s3fs", Work: "ttfb", Value: 55.5, Status: OK})
	return rs
}

// TestWinner: the best OK value wins in the row's direction; a stopped,
// failed or unrun result never wins.
func TestWinner(t *testing.T) {
	rs := testResults()
	for _, c := range []struct{ work, want string }{{"seq", "bucketfs"}, {"ls", "rclone"}, {"ttfb", "s3fs"}} {
		if got := rs.Winner(workByID(c.work)); got != c.want {
			t.Errorf("Winner(%s) = %q, want %q", c.work, got, c.want)
		}
	}
	empty := NewResults(testWorks, []string{"a"})
	empty.Add(Result{Tool: "a", Work: "seq", Value: 999, Status: Stopped, Cap: 10})
	if got := empty.Winner(testWorks[0]); got != "" {
		t.Errorf("a stopped run won: %q", got)
	}
	// Ties go to the first column.
	tie := NewResults(testWorks, []string{"a", "b"})
	tie.Add(Result{Tool: "b", Work: "ls", Value: 1, Status: OK})
	tie.Add(Result{Tool: "a", Work: "ls", Value: 1, Status: OK})
	if got := tie.Winner(testWorks[1]); got != "a" {
		t.Errorf("tie won by %q, want a", got)
	}
}

func workByID(id string) Workload {
	for _, w := range testWorks {
		if w.ID == id {
			return w
		}
	}
	panic(id)
}

// TestScore: scores are relative to the row's best on a higher-is-better
// scale; stopped runs score their bound; failures score nothing.
func TestScore(t *testing.T) {
	rs := testResults()
	for _, c := range []struct {
		work, tool string
		want       float64
		ok         bool
	}{
		{"seq", "bucketfs", 1, true},
		{"seq", "rclone", 0.5, true},
		{"seq", "s3fs", 0.25, true}, // the rate until its cap
		{"ls", "rclone", 1, true},
		{"ls", "bucketfs", 0.5, true},
		{"ls", "s3fs", 30.0 / 80, true}, // at most best/cap
		{"ttfb", "s3fs", 1, true},
		{"ttfb", "bucketfs", 0, false},
		{"ttfb", "rclone", 0, false},
		{"ttfb", "nobody", 0, false},
	} {
		got, ok := rs.Score(workByID(c.work), c.tool)
		if ok != c.ok || (ok && abs(got-c.want) > 1e-9) {
			t.Errorf("Score(%s, %s) = %v, %v; want %v, %v", c.work, c.tool, got, ok, c.want, c.ok)
		}
	}
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

// TestFormat: each status renders honestly in the row's unit.
func TestFormat(t *testing.T) {
	seq, ls, ttfb := testWorks[0], testWorks[1], testWorks[2]
	for _, c := range []struct {
		r    Result
		w    Workload
		want string
	}{
		{Result{Value: 231.4, Status: OK}, seq, "231 MB/s"},
		{Result{Value: 6.25, Status: OK}, seq, "6.2 MB/s"},
		{Result{Value: 0.754, Status: OK}, ls, "0.75 s"},
		{Result{Value: 57.34, Status: OK}, ls, "57.3 s"},
		{Result{Value: 25.12, Status: OK}, ttfb, "25.1 ms"},
		{Result{Status: Stopped, Cap: 80}, ls, "> 80 s (stopped)"},
		{Result{Status: Stopped, Cap: 45, Value: 12}, seq, "> 45 s (stopped), 12 MB/s until then"},
		{Result{Status: Failed, Err: "WRONG BYTES: x"}, seq, "**FAILED**: WRONG BYTES: x"},
		{Result{Status: Skipped, Err: "not on PATH"}, seq, "skipped: not on PATH"},
		{Result{Status: NotRun, Err: "budget"}, seq, "not run: budget"},
		{Result{Status: NotByDesign, Err: "reads are bucketfs's"}, seq, "—"},
	} {
		if got := c.r.Format(c.w); got != c.want {
			t.Errorf("Format(%+v) = %q, want %q", c.r, got, c.want)
		}
	}
	long := Result{Status: Failed, Err: strings.Repeat("é", 200)}
	if got := long.Format(seq); len(got) > 130 || !strings.HasSuffix(got, "...") {
		t.Errorf("a long error is not shortened: %d bytes", len(got))
	}
}

// TestVerdict says plainly when a peer wins.
func TestVerdict(t *testing.T) {
	rs := testResults()
	for _, c := range []struct{ work, want string }{
		{"seq", "bucketfs (rclone is 2.00x slower, the next best)"},
		{"ls", "**rclone wins** (bucketfs is 2.00x slower)"},
		{"ttfb", "**s3fs wins**; bucketfs has no result"},
	} {
		if got := rs.Verdict(workByID(c.work), "bucketfs"); got != c.want {
			t.Errorf("Verdict(%s) = %q, want %q", c.work, got, c.want)
		}
	}
	close := NewResults(testWorks, []string{"bucketfs", "s3fs"})
	close.Add(Result{Tool: "bucketfs", Work: "seq", Value: 171, Status: OK})
	close.Add(Result{Tool: "s3fs", Work: "seq", Value: 172, Status: OK})
	if got, want := close.Verdict(testWorks[0], "bucketfs"), "**s3fs wins** (bucketfs is 1% slower)"; got != want {
		t.Errorf("close Verdict = %q, want %q", got, want)
	}
}

// TestMarkdown: COMPARE.md carries the machine, versions, command lines,
// the table with units, the failures with their logs, and skipped peers
// with their reasons.
func TestMarkdown(t *testing.T) {
	rs := testResults()
	run := Run{
		Date: time.Date(2026, 12, 7, 6, 50, 0, 0, time.UTC), Machine: "2 cores (AMD EPYC)", Go: "go1.26.8",
		Server: "versitygw v1.8.0", Latency: 20 * time.Millisecond,
		Versions: map[string]string{"bucketfs": "abc123", "rclone": "v1.60.1", "s3fs": "V1.90"},
		Commands: map[string]string{"bucketfs": "bucketfs mount --endpoint URL b DIR", "rclone": "rclone mount :s3:b DIR", "s3fs": "s3fs b DIR"},
		Skipped:  map[string]string{"geesefs": "geesefs is not on PATH and GEESEFS is not set"},
		Chart:    "compare.png", Elapsed: 13*time.Minute + 2*time.Second,
	}
	md := Markdown(run, rs)
	for _, want := range []string{
		"2026-12-07 06:50 UTC", "2 cores (AMD EPYC), go1.26.8", "versitygw v1.8.0", "20 ms of first-byte latency",
		"rclone v1.60.1", "s3fs V1.90",
		"| workload | bucketfs | rclone | s3fs | best |",
		"| 1. sequential read (MB/s, higher is better) | **200 MB/s** | 100 MB/s | > 45 s (stopped), 50 MB/s until then |",
		"**rclone wins** (bucketfs is 2.00x slower)",
		"Rows won (of 3): bucketfs 1, rclone 1, s3fs 1.",
		"geesefs (geesefs is not on PATH and GEESEFS is not set)",
		"- bucketfs, 4. first byte: WRONG BYTES: the first 128 KiB",
		`daemon said \| this`,
		"```sh\n  rclone mount :s3:b DIR\n  ```",
		"![bar chart of the results](compare.png)",
		"took 13m2s",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("COMPARE.md lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(md, "| geesefs") {
		t.Error("a skipped peer has a column of its own")
	}
}

// TestSpliceReadme: the section goes before "## Code layout" the first
// time and replaces itself afterwards, leaving the rest alone.
func TestSpliceReadme(t *testing.T) {
	readme := "# bucketfs\n\n## Benchmarks\n\ntext\n\n## Code layout\n\nlayout\n"
	rs := testResults()
	run := Run{Date: time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC), Latency: 20 * time.Millisecond}
	s1 := SpliceReadme(readme, ReadmeSection(run, rs, "integration/compare.png", "integration/COMPARE.md"))
	if !strings.Contains(s1, "text\n\n## Comparison with other mounts\n\n"+ReadmeBegin) ||
		!strings.Contains(s1, ReadmeEnd+"\n\n## Code layout\n\nlayout\n") {
		t.Fatalf("first splice:\n%s", s1)
	}
	if !strings.Contains(s1, "![bucketfs compared with other S3 mounts](integration/compare.png)") ||
		!strings.Contains(s1, "Last run: 2026-12-07") || !strings.Contains(s1, "[integration/COMPARE.md](integration/COMPARE.md)") {
		t.Errorf("section lacks the chart, date or link:\n%s", s1)
	}
	run.Date = run.Date.AddDate(0, 0, 1)
	s2 := SpliceReadme(s1, ReadmeSection(run, rs, "integration/compare.png", "integration/COMPARE.md"))
	if strings.Count(s2, ReadmeBegin) != 1 || strings.Count(s2, "## Comparison with other mounts") != 1 {
		t.Fatalf("second splice duplicated the section:\n%s", s2)
	}
	if !strings.Contains(s2, "Last run: 2026-12-08") || strings.Contains(s2, "Last run: 2026-12-07") {
		t.Errorf("second splice did not replace the section:\n%s", s2)
	}
	if got := SpliceReadme("# x\n", "S"); got != "# x\n\n## Comparison with other mounts\n\nS\n" {
		t.Errorf("splice without a Code layout heading: %q", got)
	}
}

// TestChart draws a PNG of the scores.
func TestChart(t *testing.T) {
	var b bytes.Buffer
	if err := Chart(testResults(), "test", &b); err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(&b)
	if err != nil {
		t.Fatalf("not a PNG: %v", err)
	}
	if r := img.Bounds(); r.Dx() < 400 || r.Dy() < 300 {
		t.Errorf("chart is %v", r)
	}
}

// TestDiscover: a peer named by its variable runs from there; one missing
// is skipped with a reason that says how to get it, never silently.
func TestDiscover(t *testing.T) {
	peers := map[string]Peer{}
	for _, p := range Peers() {
		peers[p.Name] = p
	}
	onPath := func(have ...string) func(string) (string, error) {
		return func(f string) (string, error) {
			for _, h := range have {
				if f == h {
					return "/usr/bin/" + strings.TrimPrefix(f, "/opt/"), nil
				}
			}
			return "", errors.New("executable file not found in $PATH")
		}
	}
	env := func(kv map[string]string) func(string) string { return func(k string) string { return kv[k] } }
	for _, c := range []struct {
		peer     string
		env      map[string]string
		path     []string
		wantPath string
		wantWhy  string
	}{
		{"rclone", nil, []string{"rclone"}, "/usr/bin/rclone", ""},
		{"rclone", nil, nil, "", "make compare` installs the Debian package rclone"},
		{"s3fs", nil, nil, "", "the Debian package s3fs"},
		{"geesefs", nil, nil, "", "geesefs is not on PATH and GEESEFS is not set"},
		{"geesefs", map[string]string{"GEESEFS": "/opt/geesefs"}, []string{"/opt/geesefs"}, "/usr/bin/geesefs", ""},
		{"geesefs", map[string]string{"GEESEFS": "/nope"}, []string{"geesefs"}, "", "GEESEFS=/nope is not an executable"},
		{"tigrisfs", nil, []string{"tigrisfs"}, "/usr/bin/tigrisfs", ""},
		{"mountpoint-s3", nil, nil, "", "mount-s3 is not on PATH and MOUNT_S3 is not set"},
		{"mountpoint-s3", nil, []string{"mount-s3"}, "/usr/bin/mount-s3", ""},
	} {
		path, why := Discover(peers[c.peer], env(c.env), onPath(c.path...))
		if path != c.wantPath || (c.wantWhy == "") != (why == "") || !strings.Contains(why, c.wantWhy) {
			t.Errorf("Discover(%s, env %v, PATH %v) = %q, %q; want %q, %q", c.peer, c.env, c.path, path, why, c.wantPath, c.wantWhy)
		}
	}
}

// TestPeerCommandLines: each peer is pointed at the proxy with path-style
// requests and the region, and its command line renders for the report
// without credentials.
func TestPeerCommandLines(t *testing.T) {
	c := MountConfig{Endpoint: "http://127.0.0.1:9", Region: "us-east-1", Bucket: "b", Dir: "/m", CacheDir: "/c",
		PasswdFile: "/p", AccessKey: "AK", SecretKey: "SK"}
	for _, p := range Peers() {
		line := CommandLine(nil, p.Exe, p.Args(c))
		if !strings.Contains(line, "http://127.0.0.1:9") || !strings.Contains(line, " /m") {
			t.Errorf("%s: %s", p.Name, line)
		}
		if strings.Contains(line, "SK") {
			t.Errorf("%s's command line holds the secret: %s", p.Name, line)
		}
		if !strings.Contains(strings.Join(p.Env(c), " "), "SK") && p.Name != "s3fs" {
			t.Errorf("%s gets no credentials: %v", p.Name, p.Env(c))
		}
	}
	want := map[string][]string{
		"rclone":        {"mount :s3:b /m", "--s3-force-path-style", "--vfs-cache-mode full", "--cache-dir /c"},
		"s3fs":          {"s3fs b /m -f -o", "use_path_request_style", "passwd_file=/p", "parallel_count=16"},
		"mountpoint-s3": {"mount-s3 b /m --foreground", "--force-path-style"},
	}
	for _, p := range Peers() {
		line := CommandLine(p.Env(MountConfig{}), p.Exe, p.Args(c))
		for _, w := range want[p.Name] {
			if !strings.Contains(line, w) {
				t.Errorf("%s: %q lacks %q", p.Name, line, w)
			}
		}
	}
	if got := CommandLine([]string{"A=1"}, "x", []string{"a b", "it's", "plain"}); got != `A=1 x 'a b' 'it'\''s' plain` {
		t.Errorf("CommandLine quoting: %s", got)
	}
}

// TestVersionLine strips the tool's name from its version line.
func TestVersionLine(t *testing.T) {
	for _, c := range []struct{ name, out, want string }{
		{"rclone", "rclone v1.60.1-DEV\n- os/version: debian\n", "v1.60.1-DEV"},
		{"s3fs", "Amazon Simple Storage Service File System V1.90 (commit:unknown) with GnuTLS(gcrypt)\nCopyright", "V1.90 (commit:unknown) with GnuTLS(gcrypt)"},
		{"geesefs", "\n  geesefs version 0.43.0\n", "version 0.43.0"},
		{"x", "", "unknown version"},
	} {
		if got := VersionLine(c.name, c.out); got != c.want {
			t.Errorf("VersionLine(%s, %q) = %q, want %q", c.name, c.out, got, c.want)
		}
	}
}

const variant = "bucketfs --write-back"

// variantResults has bucketfs's write-back variant in a column of its own,
// run only in the ls row (standing for the write rows): the others are
// not run by design.
func variantResults() *Results {
	rs := NewResults(testWorks, []string{"bucketfs", variant, "rclone", "s3fs"})
	why := "this column runs only the write rows; its reads are bucketfs's"
	rs.Add(Result{Tool: "bucketfs", Work: "seq", Value: 200, Status: OK})
	rs.Add(Result{Tool: variant, Work: "seq", Status: NotByDesign, Err: why})
	rs.Add(Result{Tool: "rclone", Work: "seq", Value: 100, Status: OK})
	rs.Add(Result{Tool: "s3fs", Work: "seq", Value: 50, Status: OK})
	rs.Add(Result{Tool: "bucketfs", Work: "ls", Value: 60, Status: OK})
	rs.Add(Result{Tool: variant, Work: "ls", Value: 10, Status: OK})
	rs.Add(Result{Tool: "rclone", Work: "ls", Value: 20, Status: OK})
	rs.Add(Result{Tool: "s3fs", Work: "ls", Status: Stopped, Cap: 80})
	rs.Add(Result{Tool: "bucketfs", Work: "ttfb", Value: 60, Status: OK})
	rs.Add(Result{Tool: variant, Work: "ttfb", Status: NotByDesign, Err: why})
	rs.Add(Result{Tool: "rclone", Work: "ttfb", Value: 30, Status: OK})
	rs.Add(Result{Tool: "s3fs", Work: "ttfb", Value: 45, Status: OK})
	return rs
}

// TestNotByDesign: a row a variant does not run on purpose is "—" with a
// footnote, neither a zero nor a failure; it scores nothing, gets no bar
// and no mark on the chart, and changes no other tool's verdict or wins.
func TestNotByDesign(t *testing.T) {
	rs := variantResults()
	seq := workByID("seq")
	if got := rs.Winner(seq); got != "bucketfs" {
		t.Errorf("Winner(seq) = %q", got)
	}
	if s, ok := rs.Score(seq, variant); ok || s != 0 {
		t.Errorf("Score of a row not run by design = %v, %v; want no score", s, ok)
	}
	r, found := rs.Get("seq", variant)
	if m := chartMark(r, found); m != "" {
		t.Errorf("chart mark of a row not run by design = %q, want none", m)
	}
	for _, st := range []Status{Stopped, Failed, NotRun} {
		if m := chartMark(Result{Status: st}, true); m == "" {
			t.Errorf("status %d has no chart mark", st)
		}
	}
	if f := rs.Failures(); len(f) != 0 {
		t.Errorf("rows not run by design count as failures: %v", f)
	}
	// The verdicts of the rows it does not run are those without it.
	without := NewResults(testWorks, []string{"bucketfs", "rclone", "s3fs"})
	for _, w := range testWorks {
		for _, tool := range without.Tools {
			r, _ := rs.Get(w.ID, tool)
			without.Add(r)
		}
	}
	for _, id := range []string{"seq", "ttfb"} {
		if got, want := rs.Verdict(workByID(id), "bucketfs"), without.Verdict(workByID(id), "bucketfs"); got != want {
			t.Errorf("Verdict(%s) = %q, without the variant %q", id, got, want)
		}
	}
	if got, want := rs.Verdict(seq, "bucketfs"), "bucketfs (rclone is 2.00x slower, the next best)"; got != want {
		t.Errorf("Verdict(seq) = %q, want %q", got, want)
	}
	if got, want := rs.Verdict(workByID("ttfb"), "bucketfs"), "**rclone wins** (bucketfs is 2.00x slower)"; got != want {
		t.Errorf("Verdict(ttfb) = %q, want %q", got, want)
	}

	table := rs.Table("bucketfs")
	for _, want := range []string{
		"| workload | bucketfs | bucketfs --write-back | rclone | s3fs | best |",
		"| 1. sequential read (MB/s, higher is better) | **200 MB/s** | — | 100 MB/s | 50 MB/s | bucketfs (rclone is 2.00x slower, the next best) |",
		"| 5. ls -l (s, lower is better) | 60.0 s | **10.0 s** | 20.0 s | > 80 s (stopped) | bucketfs --write-back (rclone is 2.00x slower, the next best) |",
	} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}
	if strings.Contains(table, "FAILED") || strings.Contains(table, "not run:") {
		t.Errorf("a row not run by design reads as a failure or an unrun row:\n%s", table)
	}
	notes := rs.Footnotes()
	if len(notes) != 1 || notes[0] != "— bucketfs --write-back: not run by design: this column runs only the write rows; its reads are bucketfs's" {
		t.Errorf("Footnotes = %q, want one line for the variant", notes)
	}
	var b bytes.Buffer
	if err := Chart(rs, "test", &b); err != nil {
		t.Fatal(err)
	}
	if _, err := png.Decode(&b); err != nil {
		t.Fatalf("not a PNG: %v", err)
	}
}

// TestVariantVerdict: bucketfs's variant is on bucketfs's side. When it
// wins, the verdict names it and measures it against the best peer; when
// a peer wins, the margin of each of bucketfs's columns is given; the
// rows won count it for bucketfs, named.
func TestVariantVerdict(t *testing.T) {
	ls := workByID("ls")
	rs := variantResults()
	if got := rs.Winner(ls); got != variant {
		t.Fatalf("Winner(ls) = %q, want %q", got, variant)
	}
	// A peer wins: both of bucketfs's columns are measured against it.
	rs.Add(Result{Tool: "rclone", Work: "ls", Value: 5, Status: OK})
	if got, want := rs.Verdict(ls, "bucketfs"), "**rclone wins** (bucketfs is 12.00x slower; bucketfs --write-back is 2.00x slower)"; got != want {
		t.Errorf("Verdict = %q, want %q", got, want)
	}
	// Tied with a peer.
	rs.Add(Result{Tool: "rclone", Work: "ls", Value: 10, Status: OK})
	if got, want := rs.Verdict(ls, "bucketfs"), "bucketfs --write-back, tied with rclone"; got != want {
		t.Errorf("Verdict = %q, want %q", got, want)
	}
	// bucketfs wins by default, its variant second: the margin is over
	// the best peer.
	rs.Add(Result{Tool: "bucketfs", Work: "ls", Value: 8, Status: OK})
	if got, want := rs.Verdict(ls, "bucketfs"), "bucketfs (rclone is 1.25x slower, the next best)"; got != want {
		t.Errorf("Verdict = %q, want %q", got, want)
	}
	// No peer finished.
	only := NewResults(testWorks, []string{"bucketfs", variant, "rclone"})
	only.Add(Result{Tool: variant, Work: "ls", Value: 3, Status: OK})
	only.Add(Result{Tool: "rclone", Work: "ls", Status: Failed, Err: "x"})
	if got, want := only.Verdict(ls, "bucketfs"), "bucketfs --write-back (no peer finished)"; got != want {
		t.Errorf("Verdict = %q, want %q", got, want)
	}

	rs = variantResults()
	if got, want := winsLine(rs), "Rows won (of 3): bucketfs 2 (1 with its defaults, 1 as bucketfs --write-back), rclone 1."; got != want {
		t.Errorf("winsLine = %q, want %q", got, want)
	}
	rs.Add(Result{Tool: "bucketfs", Work: "seq", Value: 20, Status: OK})
	if got, want := winsLine(rs), "Rows won (of 3): bucketfs 1 (as bucketfs --write-back), rclone 2."; got != want {
		t.Errorf("winsLine = %q, want %q", got, want)
	}
	if got, want := winsLine(testResults()), "Rows won (of 3): bucketfs 1, rclone 1, s3fs 1."; got != want {
		t.Errorf("winsLine without a variant = %q, want %q", got, want)
	}
	// Without bucketfs's own column the variant counts as itself.
	alone := NewResults(testWorks, []string{variant, "rclone"})
	alone.Add(Result{Tool: variant, Work: "ls", Value: 3, Status: OK})
	if got, want := winsLine(alone), "Rows won (of 3): bucketfs --write-back 1."; got != want {
		t.Errorf("winsLine = %q, want %q", got, want)
	}
}

// TestMarkdownVariant: COMPARE.md gives the variant's command line under
// bucketfs's version, the footnote under the table, and one version line
// for bucketfs.
func TestMarkdownVariant(t *testing.T) {
	run := Run{
		Date: time.Date(2026, 12, 7, 7, 0, 0, 0, time.UTC), Latency: 20 * time.Millisecond,
		Versions: map[string]string{"bucketfs": "built from this tree, abc123", "rclone": "v1.60.1", "s3fs": "V1.90"},
		Commands: map[string]string{"bucketfs": "bucketfs mount b DIR", variant: "bucketfs mount --write-back --cache-dir CACHE_DIR b DIR"},
	}
	md := Markdown(run, variantResults())
	for _, want := range []string{
		"- bucketfs --write-back (built from this tree, abc123):\n\n  ```sh\n  bucketfs mount --write-back --cache-dir CACHE_DIR b DIR\n  ```",
		"|\n\n— bucketfs --write-back: not run by design: this column runs only the write rows; its reads are bucketfs's\n\nRows won (of 3): bucketfs 2 (1 with its defaults, 1 as bucketfs --write-back), rclone 1.",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("COMPARE.md lacks %q:\n%s", want, md)
		}
	}
	if strings.Count(md, "built from this tree, abc123") != 3 { // versions line and two command lines
		t.Errorf("bucketfs's version appears %d times, want 3:\n%s", strings.Count(md, "built from this tree, abc123"), md)
	}
	readme := ReadmeSection(run, variantResults(), "c.png", "C.md")
	if !strings.Contains(readme, "— bucketfs --write-back: not run by design") {
		t.Errorf("README section lacks the footnote:\n%s", readme)
	}
}
