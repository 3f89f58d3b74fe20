package boltstore

import (
	"path/filepath"
	"testing"

	"github.com/tempalias/tempalias/store"
	"github.com/tempalias/tempalias/store/storetest"
)

// The bbolt engine keeps the store contract. Its reopen closes the file
// and opens it again, as the next process after a crash does: a closed
// file's reservations are those of a process that is gone.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T, o storetest.Options) (store.Engine, func() store.Engine) {
		var opts Options
		if o.TinyIDs {
			opts.IDMinLength, opts.GuessProbability = 1, 1
		}
		path := filepath.Join(t.TempDir(), "tempalias.db")
		open := func() *Store {
			s, err := Open(path, opts)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			return s
		}
		cur := open()
		t.Cleanup(func() {
			if err := cur.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
		reopen := func() store.Engine {
			if err := cur.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			cur = open()
			return cur
		}
		return cur, reopen
	})
}
