package boltstore

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/tempalias/tempalias/alias"
	"github.com/tempalias/tempalias/store"
	bolt "go.etcd.io/bbolt"
)

func dailyKeys(t *testing.T, s *Store) int {
	t.Helper()
	n := 0
	if err := s.db.View(func(tx *bolt.Tx) error { n = tx.Bucket(bucketDaily).Stats().KeyN; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

// The daily counts do not grow without bound: a sweep on a later day
// deletes every count of the days before, in slices, and keeps today's.
func TestDailyCountsSwept(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "t.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ctx := context.Background()
	day1 := time.Date(2030, 1, 2, 12, 0, 0, 0, time.UTC)
	create := func(target string, now time.Time) {
		t.Helper()
		sp := alias.Spec{Target: target, Expires: now.Add(30 * 24 * time.Hour)}
		if _, err := s.Create(ctx, sp, now, store.Pending(), store.CreationsPerDay(10), store.ConfirmationsPerDay(10)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 30 {
		create(fmt.Sprintf("t%d@example.com", i), day1)
	}
	if n := dailyKeys(t, s); n != 60 {
		t.Fatalf("%d daily counts, want 60 (two for each of 30 targets)", n)
	}
	day2 := store.NextDay(day1).Add(time.Hour)
	create("t0@example.com", day2)
	if _, err := s.Sweep(ctx, day1.Add(11*time.Hour), 7); err != nil {
		t.Fatal(err)
	}
	if n := dailyKeys(t, s); n != 62 {
		t.Fatalf("a sweep on the same day left %d daily counts, want 62", n)
	}
	if _, err := s.Sweep(ctx, day2, 7); err != nil {
		t.Fatal(err)
	}
	if n := dailyKeys(t, s); n != 2 {
		t.Fatalf("a sweep on the next day left %d daily counts, want today's 2", n)
	}
}

// A file of format 3 written before the daily bucket existed opens, gets
// the bucket, and counts in it.
func TestDailyBucketAdded(t *testing.T) {
	path := newFile(t)
	rewriteFile(t, path, func(tx *bolt.Tx) error { return tx.DeleteBucket(bucketDaily) })
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	now := time.Date(2030, 1, 2, 12, 0, 0, 0, time.UTC)
	sp := alias.Spec{Target: "t@example.com", Expires: now.Add(time.Hour)}
	if _, err := s.Create(context.Background(), sp, now, store.CreationsPerDay(1)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(context.Background(), sp, now, store.CreationsPerDay(1)); err != store.ErrCreationsPerDay {
		t.Fatalf("second creation: %v, want ErrCreationsPerDay", err)
	}
}
