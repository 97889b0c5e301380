package store

import (
	"strings"
	"time"
)

// Archived reports whether objects of storage class c must be restored
// before they can be read (AWS Glacier Flexible Retrieval and Deep Archive,
// Tigris Archive). GLACIER_IR and the other classes read directly; unknown
// class names (MinIO reports its own tier names) are not guessed at.
func Archived(class string) bool {
	return class == "GLACIER" || class == "DEEP_ARCHIVE"
}

// RestoreState is what the object store says about a restore.
type RestoreState struct {
	// Requested is set when a restore was ever asked for.
	Requested bool
	// Ongoing is set while the restore runs.
	Ongoing bool
	// Expiry is when the restored copy goes away; zero unless done.
	Expiry time.Time
}

// Readable reports whether a restored copy can be read at now.
func (r RestoreState) Readable(now time.Time) bool {
	return !r.Ongoing && !r.Expiry.IsZero() && now.Before(r.Expiry)
}

// ParseRestore reads an x-amz-restore header. It is lenient, as servers
// differ: AWS writes `ongoing-request="false", expiry-date="Fri, 21 Dec
// 2012 00:00:00 GMT"`, Tigris documents the same without the comma, and
// versitygw sends `ongoing-request="false"` with no date for an object that
// is archived and not being restored. A copy counts as restored only with a
// parseable expiry date. ok is false for an empty or unreadable header.
func ParseRestore(h string) (st RestoreState, ok bool) {
	ongoing, hasOngoing := field(h, "ongoing-request")
	if !hasOngoing {
		return RestoreState{}, false
	}
	st.Ongoing = strings.EqualFold(ongoing, "true")
	if !st.Ongoing && !strings.EqualFold(ongoing, "false") {
		return RestoreState{}, false
	}
	st.Requested = true
	if exp, has := field(h, "expiry-date"); has && !st.Ongoing {
		for _, layout := range []string{time.RFC1123, time.RFC1123Z, time.RFC3339} {
			if t, err := time.Parse(layout, exp); err == nil {
				st.Expiry = t
				break
			}
		}
	}
	return st, true
}

// field returns the quoted value of name="value" in h.
func field(h, name string) (string, bool) {
	i := strings.Index(h, name+"=\"")
	if i < 0 {
		return "", false
	}
	rest := h[i+len(name)+2:]
	j := strings.IndexByte(rest, '"')
	if j < 0 {
		return "", false
	}
	return rest[:j], true
}

// RestoreInput asks for an archived object to be restored.
type RestoreInput struct {
	Bucket string
	Key    string
	Days   int32
	// Tier is Standard, Bulk or Expedited; empty lets the store choose
	// (Tigris ignores it).
	Tier string
}

// RestoreOutcome is how a restore request was answered.
type RestoreOutcome int

const (
	// RestoreStarted: the store accepted a new restore (202).
	RestoreStarted RestoreOutcome = iota
	// RestoreAlreadyDone: a restored copy exists; its expiry was extended (200).
	RestoreAlreadyDone
)
