package boltstore

import (
	"errors"
	"github.com/tempalias/tempalias/store"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TestRefusedAfterDeath counts mail refused for a used-up alias: in
// memory first (a refusal writes nothing), on disk after FlushCounts and
// across a restart; refusals for expired, revoked and unknown aliases are
// not counted.
func TestRefusedAfterDeath(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tempalias.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	usedUp, token := mustCreate(t, s, spec(day, 1))
	use(t, s, usedUp.ID, t0)
	revoked, revokedToken := mustCreate(t, s, spec(day, 1))
	if err := s.Revoke(bg, revoked.ID, revokedToken, t0); err != nil {
		t.Fatal(err)
	}
	live, liveToken := mustCreate(t, s, spec(day, 2))

	before := lastTx(t, s)
	for range 3 {
		if _, err := s.Reserve(bg, usedUp.ID, t0.Add(time.Hour)); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Reserve of a used-up alias = %v, want store.ErrNotFound", err)
		}
	}
	// Not counted: revoked, expired, unknown.
	for _, id := range []string{revoked.ID, "zzzzzz"} {
		if _, err := s.Reserve(bg, id, t0); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Reserve(%s) = %v", id, err)
		}
	}
	if _, err := s.Reserve(bg, usedUp.ID, usedUp.Expires); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Reserve at expiry = %v", err)
	}
	if after := lastTx(t, s); after != before {
		t.Fatalf("refusals wrote: tx %d -> %d", before, after)
	}
	if got, err := s.Authorized(bg, usedUp.ID, token, t0.Add(time.Hour)); err != nil || got.Refused != 3 || got.Used != 1 {
		t.Fatalf("before the flush: %+v, %v; want 1 used, 3 refused", got, err)
	}
	// The operator sees the same without the token; revoked is gone.
	if got, err := s.Held(bg, usedUp.ID, t0.Add(time.Hour)); err != nil || got.Refused != 3 {
		t.Fatalf("Held: %+v, %v; want 3 refused", got, err)
	}
	if _, err := s.Held(bg, revoked.ID, t0); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Held of a revoked alias: %v", err)
	}
	if got, err := s.Authorized(bg, live.ID, liveToken, t0); err != nil || got.Refused != 0 {
		t.Fatalf("live alias: %+v, %v; want 0 refused", got, err)
	}

	if err := s.flushCounts(); err != nil {
		t.Fatal(err)
	}
	if lastTx(t, s) == before {
		t.Fatal("FlushCounts wrote nothing")
	}
	flushed := lastTx(t, s)
	if err := s.flushCounts(); err != nil || lastTx(t, s) != flushed {
		t.Fatalf("a flush with nothing counted: %v, wrote %v", err, lastTx(t, s) != flushed)
	}
	if _, err := s.Reserve(bg, usedUp.ID, t0.Add(2*time.Hour)); !errors.Is(err, store.ErrNotFound) {
		t.Fatal(err)
	}
	if got, err := s.Authorized(bg, usedUp.ID, token, t0.Add(2*time.Hour)); err != nil || got.Refused != 4 {
		t.Fatalf("after the flush and one more: %+v, %v; want 4 refused", got, err)
	}

	// Close writes what is counted; a restart keeps it.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got, err := s.Authorized(bg, usedUp.ID, token, t0.Add(2*time.Hour)); err != nil || got.Refused != 4 {
		t.Fatalf("after a restart: %+v, %v; want 4 refused", got, err)
	}
	// Gone at expiry, for its holder too, and swept.
	if _, err := s.Authorized(bg, usedUp.ID, token, usedUp.Expires); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("at expiry: %v, want store.ErrNotFound", err)
	}
	if n, err := s.Sweep(bg, usedUp.Expires, 0); err != nil || n != 3 {
		t.Fatalf("Sweep at expiry = %d, %v; want 3", n, err)
	}
	checkGone(t, s, usedUp.ID)
}

// TestRefusedCountBounded checks that the ids counted between flushes are
// bounded: refusals for further ids wait for the next flush.
func TestRefusedCountBounded(t *testing.T) {
	s, _ := openStore(t, Options{})
	a, token := mustCreate(t, s, spec(day, 1))
	use(t, s, a.ID, t0)
	s.refusedMu.Lock()
	for i := range maxUnflushed {
		s.refused["filler"+strconv.Itoa(i)] = 1
	}
	s.refusedMu.Unlock()
	if _, err := s.Reserve(bg, a.ID, t0); !errors.Is(err, store.ErrNotFound) {
		t.Fatal(err)
	}
	if got, err := s.Authorized(bg, a.ID, token, t0); err != nil || got.Refused != 0 {
		t.Fatalf("counted past the bound: %d, %v", got.Refused, err)
	}
	s.refusedMu.Lock()
	n := len(s.refused)
	s.refusedMu.Unlock()
	if n != maxUnflushed {
		t.Fatalf("%d ids counted, bound %d", n, maxUnflushed)
	}
	if err := s.flushCounts(); err != nil { // unknown ids are skipped
		t.Fatal(err)
	}
	if _, err := s.Reserve(bg, a.ID, t0); !errors.Is(err, store.ErrNotFound) {
		t.Fatal(err)
	}
	if got, err := s.Authorized(bg, a.ID, token, t0); err != nil || got.Refused != 1 {
		t.Fatalf("after the flush: %d refused, %v; want 1", got.Refused, err)
	}
}

// A used-up alias leaves the per-target index at its last delivery, so
// counting a target's live aliases never walks the used-up ones it keeps
// for their holders.
func TestUsedUpLeavesTargetIndex(t *testing.T) {
	s, _ := openStore(t, Options{})
	a, _ := mustCreate(t, s, spec(day, 1))
	b, _ := mustCreate(t, s, spec(day, 0))
	entries := func() int {
		n := 0
		mustView(t, s.db, func(tx *bolt.Tx) error {
			return tx.Bucket(bucketTargets).ForEach(func(_, _ []byte) error { n++; return nil })
		})
		return n
	}
	if n := entries(); n != 2 {
		t.Fatalf("%d per-target entries, want 2", n)
	}
	use(t, s, a.ID, t0)
	if n := entries(); n != 1 {
		t.Fatalf("%d per-target entries after the last use, want 1", n)
	}
	if n, err := s.LiveForTarget(bg, b.Target, t0); err != nil || n != 1 {
		t.Fatalf("LiveForTarget = %d, %v; want 1", n, err)
	}
	if n, err := s.Sweep(bg, a.Expires, 0); err != nil || n != 2 {
		t.Fatalf("Sweep at expiry = %d, %v; want 2", n, err)
	}
	if n := entries(); n != 0 {
		t.Fatalf("%d per-target entries after the sweep", n)
	}
	checkSweepIndex(t, s)
}
