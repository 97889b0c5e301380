//go:build compare

package compare

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/bucketfs/bucketfs/integration/harness"
)

// report prints the table and writes COMPARE.md, the chart and the
// README's section: the published ones after a full run, else into
// COMPARE_OUT or a temporary directory.
func (e *env) report(elapsed time.Duration) {
	t := e.t
	run := Run{
		Date:     time.Now(),
		Machine:  machine(),
		Go:       runtime.Version(),
		Server:   "versitygw " + harness.VersitygwVersion + " (posix backend)",
		Latency:  latency,
		Versions: map[string]string{},
		Commands: map[string]string{},
		Skipped:  e.skipped,
		Elapsed:  elapsed,
		Seeding:  e.seeding,
		Chart:    "compare.png",
	}
	for _, tr := range e.tools {
		if tr.name != Self && IsVariantOf(tr.name, Self) {
			// The same build as bucketfs: one entry in the versions.
			run.Versions[Self] = tr.version
		} else {
			run.Versions[tr.name] = tr.version
		}
		run.Commands[tr.name] = tr.cmdline
	}
	var caps []string
	for _, w := range e.cfg.workloads {
		caps = append(caps, fmt.Sprintf("%s %s", w.Short, e.cfg.caps[w.ID]))
	}
	run.Caps = fmt.Sprintf("Each row of each tool runs under a time cap (%s); a run stopped at its cap shows as \"> N s (stopped)\" and never wins. The whole run has a budget of %s: a row that would start with less than 10 s of it left is not run, and says so.",
		strings.Join(caps, ", "), e.cfg.budget)
	if !e.cfg.full {
		run.Sizes = fmt.Sprintf("a short run, not the published settings: large objects of %d MiB (row 2: %d MiB each), a large directory of %d entries", e.cfg.size/mib, e.cfg.parSize/mib, e.cfg.many)
	}
	run.Extra = append(run.Extra,
		"bucketfs runs with its defaults; each peer with the flags its documentation recommends for this mix of jobs (the reasons are in integration/compare/peers.go). One command line per tool serves every row. By default bucketfs's close waits for the file's upload (row 8 pays a round trip per file); rclone's returns at once and uploads in the background.",
		"bucketfs --write-back is bucketfs with the flags it recommends for writers (`--write-back --cache-dir DIR`, a new DIR per row, removed after the unmount), in a column of its own: its close returns once the file and a journal record are fsynced in DIR, and the uploads go on in the background, as rclone's do. It runs only the write rows, 7 and 8, and is timed like every tool until every object is in the store with its full size (then each SHA-256 is checked); before the unmount, `bucketfs sync` waits for any upload still pending (only a row stopped at its cap has one), and the unmount waits for them too. Its other rows show \"—\", not run by design: its reads are bucketfs's. A row it wins counts for bucketfs in the rows won, named as bucketfs --write-back.",
		"Rows 7 and 8 write new keys of their own per tool (w7-TOOL.bin, w8-TOOL/; bucketfs --write-back's are w7-bucketfs-write-back.bin and w8-bucketfs-write-back/); their sources are local files, in the page cache.",
		fmt.Sprintf("Load average (1, 5, 15 min) when the run began: %s; when it ended: %s. Other work on the machine shares its two cores with the server, the proxy, the mount and the reader.", e.loadStart, loadavg()),
	)

	md := Markdown(run, e.results)
	fmt.Println("\n" + md)

	root, err := harness.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	outDir := filepath.Join(root, "integration")
	publish := e.cfg.full && e.cfg.out == ""
	if !publish {
		outDir = e.cfg.out
		if outDir == "" {
			outDir, _ = os.MkdirTemp("", "bucketfs-compare-")
		}
		os.MkdirAll(outDir, 0o755)
	}
	var png bytes.Buffer
	if err := Chart(e.results, fmt.Sprintf("bucketfs and other S3 mounts, %s, %s first-byte latency", run.Date.UTC().Format("2006-01-02"), ms(latency)), &png); err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) {
		if err := os.WriteFile(filepath.Join(outDir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("compare.png", png.Bytes())
	write("COMPARE.md", []byte(md))
	readmePath := filepath.Join(root, "README.md")
	if !publish {
		readmePath = filepath.Join(outDir, "README.md")
		if _, err := os.Stat(readmePath); err != nil {
			b, _ := os.ReadFile(filepath.Join(root, "README.md"))
			os.WriteFile(readmePath, b, 0o644)
		}
	}
	old, err := os.ReadFile(readmePath)
	if err != nil {
		t.Fatal(err)
	}
	section := ReadmeSection(run, e.results, "integration/compare.png", "integration/COMPARE.md")
	if err := os.WriteFile(readmePath, []byte(SpliceReadme(string(old), section)), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("report written to %s (COMPARE.md, compare.png) and %s; the run took %s", outDir, readmePath, elapsed.Round(time.Second))
}
