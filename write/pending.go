package write

import "strings"

// PendingUnder lists the pending write-back files anywhere under prefix
// of bucket (a directory about to be renamed or removed), by key.
func (m *Manager) PendingUnder(bucket, prefix string) map[string]*File {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]*File{}
	for f := range m.pending {
		if b, k := f.Name(); b == bucket && strings.HasPrefix(k, prefix) {
			out[k] = f
		}
	}
	return out
}
