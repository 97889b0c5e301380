package compare

import (
	"fmt"
	"io"
	"math"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
)

// ChartCaption explains the chart's scale; COMPARE.md and the README
// print it under the image.
const ChartCaption = "Each group is one row of the table; each bar is a tool's result divided by the best tool's result of that row " +
	"(for times: the best time divided by the tool's), so the winner of a row reaches 1.0 and every bar reads \"higher is better\" " +
	"whatever the unit. A bar marked \"stopped at cap\" is drawn at its bound (the cap, or the rate until the cap): at most what it would have scored. " +
	"A failed or unrun measurement has no bar and is marked so; peers not measured at all are not drawn (see the table). " +
	"bucketfs --write-back runs only the write rows (7 and 8) by design: in the other groups its place is left empty, unmarked (\"—\" in the table)."

// chartMark is the label over a bar that is a bound or missing: "" for a
// full result, for no result at all, and for a row not run by design
// (neither a failure nor a zero: nothing is drawn there).
func chartMark(r Result, found bool) string {
	switch {
	case !found:
	case r.Status == Stopped:
		return "stopped at cap"
	case r.Status == Failed:
		return "FAILED"
	case r.Status == NotRun:
		return "not run"
	}
	return ""
}

// Chart draws the scores (Results.Score) as a grouped bar chart, one group
// per workload and one bar per tool, and writes it as PNG to w.
func Chart(rs *Results, title string, w io.Writer) error {
	p := plot.New()
	p.Title.Text = title
	p.Y.Label.Text = "result / best result of the row (1.0 = best)"
	p.Y.Min, p.Y.Max = 0, 1.25 // room for the legend above the bars
	p.Legend.Top = true
	p.Legend.Left = false

	n := len(rs.Tools)
	width := vg.Points(float64(min(14, 80/max(n, 1))))
	var labels []string
	for _, wl := range rs.Workloads {
		labels = append(labels, wl.Short)
	}
	for i, tool := range rs.Tools {
		vals := make(plotter.Values, len(rs.Workloads))
		for j, wl := range rs.Workloads {
			if s, ok := rs.Score(wl, tool); ok {
				vals[j] = s
			}
		}
		bars, err := plotter.NewBarChart(vals, width)
		if err != nil {
			return fmt.Errorf("bars of %s: %w", tool, err)
		}
		bars.LineStyle.Width = 0
		bars.Color = plotutil.Color(i)
		bars.Offset = vg.Length(float64(i)-float64(n-1)/2) * width
		p.Add(bars)
		p.Legend.Add(tool, bars)
		// Say on the chart which bars are bounds and which are missing.
		var marks plotter.XYLabels
		for j, wl := range rs.Workloads {
			r, found := rs.Get(wl.ID, tool)
			if mark := chartMark(r, found); mark != "" {
				marks.XYs = append(marks.XYs, plotter.XY{X: float64(j), Y: vals[j] + 0.02})
				marks.Labels = append(marks.Labels, mark)
			}
		}
		if len(marks.Labels) > 0 {
			l, err := plotter.NewLabels(marks)
			if err != nil {
				return err
			}
			for k := range l.TextStyle {
				l.TextStyle[k].Rotation = math.Pi / 2
				l.TextStyle[k].YAlign = text.YCenter
				l.TextStyle[k].XAlign = text.XLeft
				l.TextStyle[k].Font.Size = vg.Points(8)
			}
			l.Offset = vg.Point{X: bars.Offset}
			p.Add(l)
		}
	}
	p.NominalX(labels...)
	p.X.Min, p.X.Max = -0.6, float64(len(rs.Workloads))-0.4
	grid := plotter.NewGrid()
	grid.Vertical.Color = nil
	p.Add(grid)
	wt, err := p.WriterTo(vg.Length(max(8, 1.3*float64(len(rs.Workloads))))*vg.Inch, 5*vg.Inch, "png")
	if err != nil {
		return err
	}
	_, err = wt.WriteTo(w)
	return err
}
