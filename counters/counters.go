// Package counters is the one table of bucketfs's counters. Each package
// lists its own (a name, a help text and a function that reads the value);
// the daemon joins the lists into a Table, which answers the mount root's
// user.bucketfs.stats attribute and feeds the Prometheus metrics, so a new
// counter is added in one place, under one name.
//
// A counter named "bytes_read" is the key "bytes_read" in the stats
// attribute and the metric bucketfs_bytes_read_total; a gauge named
// "open_readers" is bucketfs_open_readers.
//
// The package imports nothing of bucketfs's and nothing outside the
// standard library.
package counters

import (
	"fmt"
	"regexp"
)

// Kind says whether a value only grows or goes up and down.
type Kind int

const (
	KindCounter Kind = iota // only grows (Prometheus counter)
	KindGauge               // a level now (Prometheus gauge)
)

// Counter is one named value.
type Counter struct {
	Name  string // snake_case: its key in user.bucketfs.stats
	Help  string // one sentence, for the metric's HELP line
	Kind  Kind
	Value func() int64
}

// New returns a counter: a value that only grows.
func New(name, help string, value func() int64) Counter {
	return Counter{Name: name, Help: help, Kind: KindCounter, Value: value}
}

// Gauge returns a gauge: a level that goes up and down.
func Gauge(name, help string, value func() int64) Counter {
	return Counter{Name: name, Help: help, Kind: KindGauge, Value: value}
}

// Metric is the counter's Prometheus name.
func (c Counter) Metric() string {
	if c.Kind == KindCounter {
		return "bucketfs_" + c.Name + "_total"
	}
	return "bucketfs_" + c.Name
}

// Table is the daemon's counters.
type Table []Counter

var validName = regexp.MustCompile(`^[a-z][a-z0-9_]*[a-z0-9]$`)

// Check reports a table whose names clash, are not snake_case, or lack a
// help text or a value.
func (t Table) Check() error {
	seen := map[string]bool{}
	for _, c := range t {
		switch {
		case !validName.MatchString(c.Name):
			return fmt.Errorf("counter %q: not a snake_case name", c.Name)
		case seen[c.Name]:
			return fmt.Errorf("counter %q listed twice", c.Name)
		case c.Help == "":
			return fmt.Errorf("counter %q has no help text", c.Name)
		case c.Value == nil:
			return fmt.Errorf("counter %q has no value", c.Name)
		}
		seen[c.Name] = true
	}
	return nil
}

// Snapshot reads every value now, by name.
func (t Table) Snapshot() map[string]int64 {
	m := make(map[string]int64, len(t))
	for _, c := range t {
		m[c.Name] = c.Value()
	}
	return m
}
