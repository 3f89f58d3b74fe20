package boltstore

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/tempalias/tempalias/alias"
	"github.com/tempalias/tempalias/store"
	bolt "go.etcd.io/bbolt"
)

// A store opened with NoTargetIndex writes no per-target entries; opened
// without it again, it rebuilds the index from the records, so the live
// count of a per-target limit is exact however often the option changed
// between runs.
func TestNoTargetIndex(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tempalias.db")
	open := func(noIndex bool) *Store {
		t.Helper()
		s, err := Open(path, Options{NoTargetIndex: noIndex})
		if err != nil {
			t.Fatalf("Open(NoTargetIndex %v): %v", noIndex, err)
		}
		return s
	}
	entries := func(s *Store) (n int, stale bool) {
		t.Helper()
		mustView(t, s.db, func(tx *bolt.Tx) error {
			n = tx.Bucket(bucketTargets).Stats().KeyN
			stale = tx.Bucket(bucketMeta).Get(keyTargetsStale) != nil
			return nil
		})
		return n, stale
	}
	live := func(s *Store, want int) {
		t.Helper()
		if n, err := s.LiveForTarget(bg, "t@example.com", t0); err != nil || n != want {
			t.Fatalf("LiveForTarget = %d, %v; want %d", n, err, want)
		}
	}
	limited := func(maxLive int) alias.Spec {
		sp := spec(day, 0)
		sp.MaxLive = maxLive
		return sp
	}

	// Without the index: 4 made, one used up; nothing filed, the count
	// still right (read from the records), a per-target limit refused.
	s := open(true)
	for range 3 {
		mustCreate(t, s, spec(day, 0))
	}
	once, _ := mustCreate(t, s, spec(day, 1))
	use(t, s, once.ID, t0)
	if n, stale := entries(s); n != 0 || !stale {
		t.Errorf("without the index: %d entries, stale mark %v; want 0, true", n, stale)
	}
	live(s, 3)
	if _, err := s.Create(bg, limited(10), t0); !errors.Is(err, errNoTargetIndex) {
		t.Errorf("Create with MaxLive without the index: %v, want errNoTargetIndex", err)
	}
	s.Close()

	// With it: rebuilt from the records (the used-up one left out), and
	// the limit counts exactly.
	s = open(false)
	if n, stale := entries(s); n != 3 || stale {
		t.Errorf("rebuilt: %d entries, stale mark %v; want 3, false", n, stale)
	}
	live(s, 3)
	if _, err := s.Create(bg, limited(4), t0); err != nil {
		t.Fatalf("the 4th of 4: %v", err)
	}
	if _, err := s.Create(bg, limited(4), t0); !errors.Is(err, store.ErrTargetFull) {
		t.Fatalf("the 5th of 4: %v, want ErrTargetFull", err)
	}
	s.Close()

	// Without it again, two more; then with it, all six count.
	s = open(true)
	mustCreate(t, s, spec(day, 0))
	mustCreate(t, s, spec(day, 0))
	live(s, 6)
	s.Close()
	s = open(false)
	t.Cleanup(func() { s.Close() })
	live(s, 6)
	if _, err := s.Create(bg, limited(6), t0); !errors.Is(err, store.ErrTargetFull) {
		t.Fatalf("the 7th of 6: %v, want ErrTargetFull", err)
	}
}
