package prefetch

import "fmt"

// checkInvariants checks what must hold once the read path is quiet (no
// read under way and every flight landed), and returns the first breach:
//   - the budget's use equals the bytes the open streams hold, so no hold
//     outlives its block and none is given back twice;
//   - every held block holds the budget bytes of its block, and its
//     flight is for that block;
//   - no window is wider than MaxReadahead.
//
// It takes every Reader's lock; tests call it, the daemon does not.
func (m *Manager) checkInvariants() error {
	m.readersMu.Lock()
	defer m.readersMu.Unlock()
	var held int64
	for r := range m.readers {
		r.mu.Lock()
		err := r.checkLocked(&held)
		r.mu.Unlock()
		if err != nil {
			return err
		}
	}
	ahead := m.aheadHeld()
	held += ahead
	used := m.budget.Used()
	switch {
	case used != held:
		return fmt.Errorf("budget holds %d bytes, the streams and files ahead %d (%d)", used, held, ahead)
	case used > m.budget.Capacity():
		return fmt.Errorf("budget holds %d bytes, over its %d", used, m.budget.Capacity())
	case m.budget.Mismatches() != 0:
		return fmt.Errorf("%d budget releases did not match what was held", m.budget.Mismatches())
	}
	return nil
}

// checkLocked adds the bytes r's stream holds to held and checks its
// blocks. REQUIRES: r.mu held.
func (r *Reader) checkLocked(held *int64) error {
	s := r.s
	if s == nil {
		return nil
	}
	if s.window > r.m.cfg.MaxReadahead {
		return fmt.Errorf("%s: window %d over the %d maximum", r.v.Key, s.window, r.m.cfg.MaxReadahead)
	}
	for idx, hb := range s.held {
		if hb.bytes != r.blockLen(idx) || int64(hb.f.Len()) != hb.bytes {
			return fmt.Errorf("%s block %d: holds %d budget bytes for a block of %d", r.v.Key, idx, hb.bytes, hb.f.Len())
		}
		if hb.f.Key() != r.key(idx) {
			return fmt.Errorf("%s block %d: held flight is for %v", r.v.Key, idx, hb.f.Key())
		}
		*held += hb.bytes
	}
	return nil
}
