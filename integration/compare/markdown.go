package compare

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Run describes the circumstances of one comparison run: what COMPARE.md
// and the README say around the table.
type Run struct {
	Date     time.Time
	Machine  string            // "2 cores (AMD EPYC), kernel 6.18, 24 GiB"
	Go       string            // runtime.Version()
	Server   string            // "versitygw v1.8.0 (posix backend)"
	Latency  time.Duration     // the proxy's first-byte latency
	Versions map[string]string // tool -> version line
	Commands map[string]string // tool -> the exact command line it ran with
	Skipped  map[string]string // peer -> why it did not run
	Sizes    string            // the data sizes, when they differ from the full run's
	Caps     string            // the time caps
	Elapsed  time.Duration     // wall time of the whole run, seeding included
	Seeding  string            // how the data was put in place, and how long it took
	Chart    string            // the chart's file name, relative to COMPARE.md
	Extra    []string          // other notes
}

// Self is the tool the comparison is about.
const Self = "bucketfs"

// Markdown renders COMPARE.md.
func Markdown(run Run, rs *Results) string {
	var b strings.Builder
	b.WriteString("# bucketfs compared with other S3 mounts\n\n")
	fmt.Fprintf(&b, "Written by `make compare` on %s. Every number below was measured in that one run.\n\n", run.Date.UTC().Format("2006-01-02 15:04 MST"))
	b.WriteString(header(run))
	b.WriteString("\n## Results\n\n")
	b.WriteString(rs.Table(Self))
	b.WriteString(footnotes(rs))
	b.WriteString("\n" + winsLine(rs) + skippedLine(run) + "\n\n")
	if f := rs.Failures(); len(f) > 0 {
		b.WriteString("**Failures** (a wrong byte or an error; these rows are not comparisons):\n\n")
		for _, r := range f {
			fmt.Fprintf(&b, "- %s, %s: %s\n", r.Tool, workTitle(rs, r.Work), escapeCell(r.Err))
			if r.Log != "" {
				fmt.Fprintf(&b, "  The end of its log: `%s`\n", strings.ReplaceAll(escapeCell(r.Log), "`", "'"))
			}
		}
		b.WriteString("\n")
	}
	if run.Chart != "" {
		fmt.Fprintf(&b, "![bar chart of the results](%s)\n\n%s\n\n", run.Chart, ChartCaption)
	}
	b.WriteString("## Command lines\n\n")
	for _, t := range rs.Tools {
		if c, ok := run.Commands[t]; ok {
			fmt.Fprintf(&b, "- %s (%s):\n\n  ```sh\n  %s\n  ```\n\n", t, versionOf(run, t), c)
		}
	}
	if len(run.Skipped) > 0 {
		b.WriteString("## Peers not measured\n\n")
		for _, name := range sortedKeys(run.Skipped) {
			fmt.Fprintf(&b, "- %s: %s\n", name, run.Skipped[name])
		}
		b.WriteString("\n")
	}
	b.WriteString("## How it was measured\n\n")
	for _, s := range method(run) {
		fmt.Fprintf(&b, "- %s\n", s)
	}
	if notes := rs.Notes(); len(notes) > 0 {
		b.WriteString("\n## Notes per row\n\n")
		for _, n := range notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
	}
	return b.String()
}

// versionOf is tool's version; a variant of bucketfs ("bucketfs
// --write-back") is the same build.
func versionOf(run Run, tool string) string {
	if v, ok := run.Versions[tool]; ok {
		return v
	}
	if IsVariantOf(tool, Self) {
		return run.Versions[Self]
	}
	return "unknown version"
}

// footnotes renders Results.Footnotes under a table, each line a
// paragraph of its own.
func footnotes(rs *Results) string {
	var b strings.Builder
	for _, f := range rs.Footnotes() {
		b.WriteString("\n" + f + "\n")
	}
	return b.String()
}

func header(run Run) string {
	var b strings.Builder
	fmt.Fprintf(&b, "- Machine: %s, %s\n", run.Machine, run.Go)
	fmt.Fprintf(&b, "- Server: %s on 127.0.0.1 behind our proxy adding %s of first-byte latency to every request, no bandwidth cap; the server, the proxy, the mount and the reader share the machine's cores\n", run.Server, ms(run.Latency))
	var vs []string
	for _, t := range sortedKeys(run.Versions) {
		vs = append(vs, fmt.Sprintf("%s %s", t, run.Versions[t]))
	}
	fmt.Fprintf(&b, "- Versions: %s\n", strings.Join(vs, "; "))
	if len(run.Skipped) > 0 {
		fmt.Fprintf(&b, "- Not measured: %s (why: under the table)\n", strings.Join(sortedKeys(run.Skipped), ", "))
	}
	if run.Sizes != "" {
		fmt.Fprintf(&b, "- Sizes: %s\n", run.Sizes)
	}
	if run.Elapsed > 0 {
		fmt.Fprintf(&b, "- The whole run (seeding, every mount, every row) took %s\n", run.Elapsed.Round(time.Second))
	}
	return b.String()
}

func method(run Run) []string {
	out := []string{
		"Every tool reads and writes the same bucket on the same server through the same proxy. Each row mounts the tool afresh (an empty cache: rclone and bucketfs --write-back get a new --cache-dir, removed after the unmount) and the kernel's page cache is dropped (`echo 3 > /proc/sys/vm/drop_caches`) before it.",
		"Every byte read is checked: whole files against the SHA-256 of the data put there, random reads byte for byte against the expected data. Writes are checked by reading the stored objects back through the S3 API (straight from the server) and comparing their SHA-256. A wrong byte fails the row for that tool, loudly; it is never counted as a result.",
		"Times end when the data is where the row says: for reads when the last byte is in the reader's hands, for writes when every object is in the store with its full size (a tool whose close returns before the upload is timed until the upload is done).",
	}
	if run.Caps != "" {
		out = append(out, run.Caps)
	}
	if run.Seeding != "" {
		out = append(out, run.Seeding)
	}
	return append(out, run.Extra...)
}

// winsLine counts the rows each tool wins; those won by a variant of
// bucketfs count for bucketfs, and say so: "bucketfs 6 (5 with its
// defaults, 1 as bucketfs --write-back)".
func winsLine(rs *Results) string {
	wins := rs.Wins()
	var parts []string
	hasSelf := false
	for _, t := range rs.Tools {
		hasSelf = hasSelf || t == Self
	}
	for _, t := range rs.Tools {
		if hasSelf && IsVariantOf(t, Self) && t != Self {
			continue
		}
		n := wins[t]
		var detail []string
		if t == Self {
			for _, v := range rs.Tools {
				if v != Self && IsVariantOf(v, Self) && wins[v] > 0 {
					n += wins[v]
					detail = append(detail, fmt.Sprintf("%d as %s", wins[v], v))
				}
			}
			switch {
			case len(detail) > 0 && wins[Self] > 0:
				detail = append([]string{fmt.Sprintf("%d with its defaults", wins[Self])}, detail...)
			case len(detail) == 1:
				_, as, _ := strings.Cut(detail[0], " ")
				detail[0] = as // "as bucketfs --write-back": every one of them
			}
		}
		if n == 0 {
			continue
		}
		part := fmt.Sprintf("%s %d", t, n)
		if len(detail) > 0 {
			part += " (" + strings.Join(detail, ", ") + ")"
		}
		parts = append(parts, part)
	}
	if len(parts) == 0 {
		return "No row has a winner."
	}
	return fmt.Sprintf("Rows won (of %d): %s.", len(rs.Workloads), strings.Join(parts, ", "))
}

// skippedLine names the peers not measured, and why, under the table.
func skippedLine(run Run) string {
	if len(run.Skipped) == 0 {
		return ""
	}
	var parts []string
	for _, name := range sortedKeys(run.Skipped) {
		parts = append(parts, fmt.Sprintf("%s (%s)", name, run.Skipped[name]))
	}
	return " Skipped, not measured (no result, not a zero): " + strings.Join(parts, "; ") + "."
}

func workTitle(rs *Results, id string) string {
	for _, w := range rs.Workloads {
		if w.ID == id {
			return w.Title
		}
	}
	return id
}

func ms(d time.Duration) string { return fmt.Sprintf("%g ms", float64(d)/1e6) }

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// README markers around the generated section.
const (
	ReadmeBegin = "<!-- compare: written by make compare -->"
	ReadmeEnd   = "<!-- end compare -->"
)

// ReadmeSection renders the README's "Comparison with other mounts" body
// (between the markers) from the same results as COMPARE.md.
func ReadmeSection(run Run, rs *Results, chartPath, comparePath string) string {
	var b strings.Builder
	b.WriteString(ReadmeBegin + "\n\n")
	fmt.Fprintf(&b, "`make compare` runs the same workloads through bucketfs and the other FUSE mounts of S3 against one versitygw behind a %s first-byte-latency proxy, all on one machine, checking every byte. Last run: %s.\n\n", ms(run.Latency), run.Date.UTC().Format("2006-01-02"))
	b.WriteString(header(run))
	b.WriteString("\n")
	b.WriteString(rs.Table(Self))
	b.WriteString(footnotes(rs))
	b.WriteString("\n" + winsLine(rs) + skippedLine(run) + "\n\n")
	if chartPath != "" {
		fmt.Fprintf(&b, "![bucketfs compared with other S3 mounts](%s)\n\n%s\n\n", chartPath, ChartCaption)
	}
	fmt.Fprintf(&b, "The exact command line of each tool, the peers not measured and why, and a note per row are in [%s](%s).\n\n", comparePath, comparePath)
	b.WriteString(ReadmeEnd)
	return b.String()
}

// SpliceReadme replaces the text between the markers in readme with
// section (which carries the markers), or appends a "Comparison with other
// mounts" heading and section before the "## Code layout" heading (at the
// end when there is none).
func SpliceReadme(readme, section string) string {
	i, j := strings.Index(readme, ReadmeBegin), strings.Index(readme, ReadmeEnd)
	if i >= 0 && j > i {
		return readme[:i] + section + readme[j+len(ReadmeEnd):]
	}
	block := "## Comparison with other mounts\n\n" + section + "\n\n"
	if k := strings.Index(readme, "\n## Code layout"); k >= 0 {
		return readme[:k+1] + block + readme[k+1:]
	}
	return strings.TrimRight(readme, "\n") + "\n\n" + strings.TrimRight(block, "\n") + "\n"
}
