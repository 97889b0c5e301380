// Package compare measures bucketfs against the other FUSE mounts of S3
// (rclone mount, s3fs, and geesefs, tigrisfs and mountpoint-s3 when they
// are installed) on the same workloads, the same versitygw and the same
// 20 ms proxy, in one run (`make compare`, build tag compare), and writes
// the results to integration/COMPARE.md, a bar chart and a section of the
// README.
//
// This file and peers.go hold the parts that need no mount: the results,
// who wins each row, the Markdown, the chart and which peers can run. They
// are unit tested in `make test`; the run itself is in the files built with
// the tag.
package compare

import (
	"fmt"
	"math"
	"strings"
	"unicode/utf8"
)

// Status is how a measurement ended.
type Status int

const (
	OK      Status = iota // measured, every byte checked
	Stopped               // stopped at its time cap: the value is a bound
	Failed                // an error or a wrong byte
	Skipped               // the tool is not available
	NotRun                // the run's time budget was spent before this row
	// NotByDesign marks a row a tool's variant does not run on purpose
	// (bucketfs --write-back runs only the write rows): no result, not a
	// zero, never a failure; Err says why.
	NotByDesign
)

// NotByDesignCell is a NotByDesign result's cell; a footnote under the
// table says why (Results.Footnotes).
const NotByDesignCell = "—"

// Workload is one row of the comparison.
type Workload struct {
	ID     string // short name, used in flags and file names: "seq", "ls100k"
	Title  string // what the row measures, as shown in the table
	Short  string // the chart's label
	Unit   string // "MB/s", "s" or "ms"
	Higher bool   // whether a higher value is better
}

// Result is one tool's measurement of one workload.
type Result struct {
	Tool   string
	Work   string // Workload.ID
	Value  float64
	Status Status
	Cap    float64 // seconds: the time cap, for Stopped
	Note   string  // what else was seen: amplification, the stored object's check, ...
	Err    string  // for Failed, Skipped and NotRun: why
	Log    string  // for Failed: the end of the tool's own log
}

// Format renders a result in its workload's unit.
func (r Result) Format(w Workload) string {
	switch r.Status {
	case OK:
		return formatValue(r.Value, w.Unit)
	case Stopped:
		s := fmt.Sprintf("> %.0f s (stopped)", r.Cap)
		if w.Higher && r.Value > 0 {
			s += fmt.Sprintf(", %s until then", formatValue(r.Value, w.Unit))
		}
		return s
	case Failed:
		return "**FAILED**: " + shorten(r.Err, 100)
	case Skipped:
		return "skipped: " + r.Err
	case NotByDesign:
		return NotByDesignCell
	default:
		return "not run: " + r.Err
	}
}

func formatValue(v float64, unit string) string {
	switch unit {
	case "MB/s":
		if v < 10 {
			return fmt.Sprintf("%.1f MB/s", v)
		}
		return fmt.Sprintf("%.0f MB/s", v)
	case "s":
		if v < 10 {
			return fmt.Sprintf("%.2f s", v)
		}
		return fmt.Sprintf("%.1f s", v)
	case "ms":
		return fmt.Sprintf("%.1f ms", v)
	}
	return fmt.Sprintf("%g %s", v, unit)
}

// Results holds every measurement of a run.
type Results struct {
	Workloads []Workload
	Tools     []string // in column order, bucketfs first
	rows      map[string]map[string]Result
}

// NewResults returns an empty table.
func NewResults(works []Workload, tools []string) *Results {
	return &Results{Workloads: works, Tools: tools, rows: map[string]map[string]Result{}}
}

// Add records r, replacing an earlier result of the same tool and workload.
func (rs *Results) Add(r Result) {
	if rs.rows[r.Work] == nil {
		rs.rows[r.Work] = map[string]Result{}
	}
	rs.rows[r.Work][r.Tool] = r
}

// Get returns the result of tool on work, and whether there is one.
func (rs *Results) Get(work, tool string) (Result, bool) {
	r, ok := rs.rows[work][tool]
	return r, ok
}

// Winner returns the tool with the best OK value of work, or "" when no
// tool has one. A stopped run never wins: its value is only a bound. Ties
// go to the tool listed first.
func (rs *Results) Winner(w Workload) string {
	best, bestV := "", 0.0
	for _, t := range rs.Tools {
		r, ok := rs.rows[w.ID][t]
		if !ok || r.Status != OK {
			continue
		}
		if best == "" || (w.Higher && r.Value > bestV) || (!w.Higher && r.Value < bestV) {
			best, bestV = t, r.Value
		}
	}
	return best
}

// Score is a tool's result relative to the best of its row: 1 for the
// winner, best/value (lower is better) or value/best (higher is better)
// for the others, so every row reads "higher is better" on one scale. A
// stopped run scores its bound (the cap for times, the rate until the cap
// for rates): at most what it would have scored. Failed, skipped and
// unrun results, and those not run by design, score 0 and ok false.
func (rs *Results) Score(w Workload, tool string) (score float64, ok bool) {
	win := rs.Winner(w)
	if win == "" {
		return 0, false
	}
	best := rs.rows[w.ID][win].Value
	r, found := rs.rows[w.ID][tool]
	if !found {
		return 0, false
	}
	v := r.Value
	switch r.Status {
	case OK:
	case Stopped:
		if !w.Higher {
			v = r.Cap
			if w.Unit == "ms" {
				v = r.Cap * 1000
			}
		}
	default:
		return 0, false
	}
	if v <= 0 || best <= 0 {
		return 0, false
	}
	if w.Higher {
		return math.Min(v/best, 1), true
	}
	return math.Min(best/v, 1), true
}

// Verdict says in words who wins a row and by how much over bucketfs (or
// bucketfs over the next best peer), plainly when a peer wins. A variant
// of self (a column named "self --flag", such as "bucketfs --write-back")
// is on self's side: when it wins, the verdict names it and measures it
// against the best peer; when a peer wins, the margin of each of self's
// columns with a result is given.
func (rs *Results) Verdict(w Workload, self string) string {
	win := rs.Winner(w)
	if win == "" {
		return "no tool finished"
	}
	if !IsVariantOf(win, self) {
		var behind []string
		for _, t := range rs.Tools {
			if !IsVariantOf(t, self) {
				continue
			}
			if s, ok := rs.Score(w, t); ok {
				behind = append(behind, margin(t, 1/s, "slower"))
			}
		}
		if len(behind) == 0 {
			return fmt.Sprintf("**%s wins**; %s has no result", win, self)
		}
		return fmt.Sprintf("**%s wins** (%s)", win, strings.Join(behind, "; "))
	}
	second, secondS := "", 0.0
	for _, t := range rs.Tools {
		if IsVariantOf(t, self) {
			continue
		}
		if s, ok := rs.Score(w, t); ok && s > secondS {
			second, secondS = t, s
		}
	}
	if second == "" {
		return win + " (no peer finished)"
	}
	if secondS >= 1 {
		return fmt.Sprintf("%s, tied with %s", win, second)
	}
	return fmt.Sprintf("%s (%s)", win, margin(second, 1/secondS, "slower, the next best"))
}

// IsVariantOf says whether tool is self or a variant of it: self with
// flags, "bucketfs --write-back".
func IsVariantOf(tool, self string) bool {
	return tool == self || strings.HasPrefix(tool, self+" ")
}

// margin says how far behind tool is: "rclone is 2.50x slower", or, under
// 10%, "rclone is 3% slower" (a ratio like 1.03x reads as a tie).
func margin(tool string, ratio float64, what string) string {
	if ratio < 1.1 {
		return fmt.Sprintf("%s is %.0f%% %s", tool, (ratio-1)*100, what)
	}
	return fmt.Sprintf("%s is %.2fx %s", tool, ratio, what)
}

// Table renders the results as a Markdown table: one row per workload,
// one column per tool, and the winner.
func (rs *Results) Table(self string) string {
	var b strings.Builder
	b.WriteString("| workload | " + strings.Join(rs.Tools, " | ") + " | best |\n")
	b.WriteString("| --- |" + strings.Repeat(" --- |", len(rs.Tools)) + " --- |\n")
	for _, w := range rs.Workloads {
		dir := "lower is better"
		if w.Higher {
			dir = "higher is better"
		}
		cells := []string{fmt.Sprintf("%s (%s, %s)", w.Title, w.Unit, dir)}
		for _, t := range rs.Tools {
			r, ok := rs.rows[w.ID][t]
			if !ok {
				cells = append(cells, "")
				continue
			}
			c := r.Format(w)
			if r.Status == OK && t == rs.Winner(w) {
				c = "**" + c + "**"
			}
			cells = append(cells, escapeCell(c))
		}
		cells = append(cells, rs.Verdict(w, self))
		b.WriteString("| " + strings.Join(cells, " | ") + " |\n")
	}
	return b.String()
}

// Footnotes explains the cells of results not run by design, one line per
// tool and reason: "— bucketfs --write-back: not run by design: ...".
func (rs *Results) Footnotes() []string {
	var out []string
	seen := map[string]bool{}
	for _, t := range rs.Tools {
		for _, w := range rs.Workloads {
			r, ok := rs.rows[w.ID][t]
			if !ok || r.Status != NotByDesign || seen[t+"\x00"+r.Err] {
				continue
			}
			seen[t+"\x00"+r.Err] = true
			out = append(out, fmt.Sprintf("%s %s: not run by design: %s", NotByDesignCell, t, escapeCell(r.Err)))
		}
	}
	return out
}

// Notes lists each result's note, row by row.
func (rs *Results) Notes() []string {
	var out []string
	for _, w := range rs.Workloads {
		for _, t := range rs.Tools {
			if r, ok := rs.rows[w.ID][t]; ok && r.Note != "" {
				out = append(out, fmt.Sprintf("%s, %s: %s", w.Title, t, r.Note))
			}
		}
	}
	return out
}

// Failures lists the failed results, the rows to shout about.
func (rs *Results) Failures() []Result {
	var out []Result
	for _, w := range rs.Workloads {
		for _, t := range rs.Tools {
			if r, ok := rs.rows[w.ID][t]; ok && r.Status == Failed {
				out = append(out, r)
			}
		}
	}
	return out
}

// Wins counts the rows each tool wins.
func (rs *Results) Wins() map[string]int {
	m := map[string]int{}
	for _, w := range rs.Workloads {
		if win := rs.Winner(w); win != "" {
			m[win]++
		}
	}
	return m
}

func escapeCell(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "|", `\|`), "\n", " ")
}

// shorten cuts s to at most n bytes (at a rune boundary), marking the cut.
func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}
