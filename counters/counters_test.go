package counters

import (
	"strings"
	"testing"
)

func TestMetricNames(t *testing.T) {
	n := int64(3)
	tab := Table{
		New("bytes_read", "Bytes returned to readers.", func() int64 { return n }),
		Gauge("open_readers", "Files open for reading.", func() int64 { return 1 }),
	}
	if err := tab.Check(); err != nil {
		t.Fatal(err)
	}
	if got := tab[0].Metric(); got != "bucketfs_bytes_read_total" {
		t.Errorf("counter metric %q", got)
	}
	if got := tab[1].Metric(); got != "bucketfs_open_readers" {
		t.Errorf("gauge metric %q", got)
	}
	n = 5
	if s := tab.Snapshot(); s["bytes_read"] != 5 || s["open_readers"] != 1 || len(s) != 2 {
		t.Errorf("snapshot %v", s)
	}
}

func TestCheckRefusesBadTables(t *testing.T) {
	v := func() int64 { return 0 }
	for _, tc := range []struct {
		tab  Table
		want string
	}{
		{Table{New("a_b", "x", v), Gauge("a_b", "y", v)}, "twice"},
		{Table{New("BytesRead", "x", v)}, "snake_case"},
		{Table{New("bytes_", "x", v)}, "snake_case"},
		{Table{New("bytes", "", v)}, "help"},
		{Table{New("bytes", "x", nil)}, "value"},
	} {
		err := tc.tab.Check()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Check(%v) = %v, want an error about %q", tc.tab[len(tc.tab)-1].Name, err, tc.want)
		}
	}
}
