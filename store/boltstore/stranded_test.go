package boltstore

import (
	"io"
	"os"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// A reservation never settled (the process died between RCPT and the end
// of data) is released when the file is next opened: the alias has its
// use back, not "busy" until it expires. Committed uses stay spent.
func TestStrandedReservationsReleasedAtOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tempalias.db")
	st, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	s := &testStore{Store: st}
	one, _ := mustCreate(t, s, spec(3*day, 1))
	three, _ := mustCreate(t, s, spec(3*day, 3))
	unlimited, _ := mustCreate(t, s, spec(3*day, 0))
	for _, id := range []string{one.ID, three.ID, three.ID, three.ID, unlimited.ID} {
		if _, err := s.Reserve(id, t0); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Commit(three.ID, t0); err != nil { // delivered: stays spent
		t.Fatal(err)
	}
	if _, err := s.Reserve(one.ID, t0); err != ErrExhausted {
		t.Fatalf("second Reserve of a max-usage 1 alias = %v, want ErrExhausted", err)
	}
	// The crash: the file is closed with three reservations open.
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	st, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	s = &testStore{Store: st}
	t.Cleanup(func() { s.Close() })
	for _, c := range []struct {
		id            string
		used, pending int
	}{{one.ID, 0, 0}, {three.ID, 1, 0}, {unlimited.ID, 0, 0}} {
		a := mustGet(t, s, c.id, t0)
		if a.Used != c.used || a.Pending != c.pending {
			t.Errorf("%s after reopen: used %d pending %d, want %d %d", c.id, a.Used, a.Pending, c.used, c.pending)
		}
	}
	if _, err := s.Reserve(one.ID, t0); err != nil {
		t.Errorf("Reserve after reopen: %v", err)
	}
	mustView(t, s.db, func(tx *bolt.Tx) error {
		if n := tx.Bucket(bucketReserved).Stats().KeyN; n != 1 {
			t.Errorf("%d reservations filed, want the 1 just made", n)
		}
		return nil
	})
}

// A file written by the landed tree before format 3 (testdata/format2.db,
// made with that tree's store package) opens with every alias kept, its
// stranded reservation released, its tombstone kept and its confirmation
// token working.
func TestMigrateFormat2(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tempalias.db")
	copyFile(t, "testdata/format2.db", path)
	// What the generator printed for the file.
	const (
		live, liveToken = "8lpruw", "-BbdZ6tRo5ONTw-XYMdimwkA3i74ZAJp" // max-usage 5, 1 delivered, 1 reserved and never settled
		usedUp          = "oohhdg"                                     // max-usage 1, delivered
		unlimited       = "tav2pg"
		pending         = "vj4z1w"
		confirm         = "gXQz6UezGlKo_I_dSazfGZa0scVUcaB-"
		swept           = "xynov0"
	)
	s, err := openTest(path, Options{IDMinLength: 6})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	a, err := s.Authorized(live, liveToken, t0)
	if err != nil || a.Used != 1 || a.Pending != 0 || a.MaxUsage != 5 || a.Target != "live@example.com" {
		t.Fatalf("live alias after migration: %+v, %v; want used 1, pending 0 (released)", a, err)
	}
	if a, err := s.Held(usedUp, t0); err != nil || !a.UsedUp() {
		t.Errorf("used-up alias after migration: %+v, %v", a, err)
	}
	if _, err := s.Reserve(usedUp, t0); err != ErrNotFound {
		t.Errorf("Reserve of the used-up alias = %v", err)
	}
	if _, err := s.Reserve(unlimited, t0); err != nil {
		t.Errorf("Reserve of the unlimited alias = %v", err)
	}
	if _, err := s.Reserve(pending, t0); err != ErrNotFound {
		t.Errorf("pending alias relays before confirmation: %v", err)
	}
	if a, err := s.Confirm(confirm, t0, day); err != nil || a.ID != pending {
		t.Errorf("Confirm = %+v, %v", a, err)
	}
	if _, err := s.Reserve(pending, t0); err != nil {
		t.Errorf("confirmed alias: %v", err)
	}
	mustView(t, s.db, func(tx *bolt.Tx) error {
		if f := fileFormat(tx); f != format {
			t.Errorf("format %d after migration, want %d", f, format)
		}
		if v := tx.Bucket(bucketAliases).Get([]byte(swept)); !isTombstone(v) {
			t.Errorf("swept id %s: %q, want its tombstone", swept, v)
		}
		return tx.Bucket(bucketAliases).ForEach(func(k, v []byte) error {
			if !isTombstone(v) && !hasHeader(v) {
				t.Errorf("record %s not rewritten", k)
			}
			return nil
		})
	})
	if st := mustStats(t, s); st.Issued != 5 || st.Aliases != 4 {
		t.Errorf("Stats after migration: %+v", st)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
