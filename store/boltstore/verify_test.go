package boltstore

import (
	"bytes"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/tempalias/tempalias/alias"
	bolt "go.etcd.io/bbolt"
)

func TestUnverifiedAliasRefusesUntilConfirmed(t *testing.T) {
	s, _ := openStore(t, Options{})
	a, _, confirm, err := s.CreateUnverified(spec(3*day, 2), t0)
	if err != nil {
		t.Fatal(err)
	}
	if !a.Unverified || confirm == "" {
		t.Fatalf("created %+v, confirm %q", a, confirm)
	}
	if ok, err := s.TargetVerified("t@example.com", t0); err != nil || ok {
		t.Fatalf("target verified before confirmation: %v, %v", ok, err)
	}
	if _, err := s.Reserve(a.ID, t0); err != ErrNotFound {
		t.Fatalf("Reserve on a pending alias: %v, want ErrNotFound like an unknown alias", err)
	}
	before := lastTx(t, s)
	if _, err := s.Confirm("wrong"+confirm, t0, 90*day); err != ErrNotFound {
		t.Fatalf("wrong token: %v", err)
	}
	if lastTx(t, s) != before {
		t.Error("an unknown confirmation token caused a write")
	}
	got, err := s.Confirm(confirm, t0.Add(time.Hour), 90*day)
	if err != nil || got.ID != a.ID || got.Unverified {
		t.Fatalf("Confirm: %+v %v", got, err)
	}
	if _, err := s.Confirm(confirm, t0.Add(time.Hour), 90*day); err != ErrNotFound {
		t.Fatalf("second Confirm: %v, want ErrNotFound (one use)", err)
	}
	if _, err := s.Reserve(a.ID, t0.Add(time.Hour)); err != nil {
		t.Fatalf("Reserve after confirmation: %v", err)
	}
	// The target is remembered, case-insensitively, for the given time.
	for _, c := range []struct {
		target string
		at     time.Time
		want   bool
	}{
		{"t@example.com", t0.Add(89 * day), true},
		{"T@EXAMPLE.com", t0.Add(89 * day), true},
		{"u@example.com", t0.Add(day), false},
		{"t@example.com", t0.Add(91 * day), false},
	} {
		if ok, err := s.TargetVerified(c.target, c.at); ok != c.want || err != nil {
			t.Errorf("TargetVerified(%s, +%v) = %v %v", c.target, c.at.Sub(t0), ok, err)
		}
	}
	// The verified bucket keys are hashes: the address is not in it.
	mustView(t, s.db, func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketVerify, bucketTargets} {
			tx.Bucket(b).ForEach(func(k, v []byte) error {
				if bytes.Contains(k, []byte("example.com")) {
					t.Errorf("bucket %s holds the address in clear", b)
				}
				return nil
			})
		}
		return nil
	})
}

func TestConfirmDeadAlias(t *testing.T) {
	s, _ := openStore(t, Options{})
	a, _, confirm, err := s.CreateUnverified(spec(day, 0), t0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Confirm(confirm, t0.Add(2*day), 90*day); err != ErrNotFound {
		t.Fatalf("Confirm after expiry: %v", err)
	}
	if n, err := s.Sweep(t0.Add(2*day), 10); n != 1 || err != nil {
		t.Fatalf("Sweep: %d %v", n, err)
	}
	mustView(t, s.db, func(tx *bolt.Tx) error {
		if n := tx.Bucket(bucketConfirm).Stats().KeyN; n != 0 {
			t.Errorf("%d confirmation entries left after the sweep", n)
		}
		if n := tx.Bucket(bucketTargets).Stats().KeyN; n != 0 {
			t.Errorf("%d target index entries left after the sweep", n)
		}
		return nil
	})
	if _, err := s.Confirm(confirm, t0.Add(2*day), 90*day); err != ErrNotFound {
		t.Fatalf("Confirm after sweep: %v", err)
	}
	if ok, err := s.TargetVerified(a.Target, t0); err != nil || ok {
		t.Errorf("an expired confirmation verified the target: %v, %v", ok, err)
	}
}

func TestLiveForTarget(t *testing.T) {
	s, _ := openStore(t, Options{})
	var ids []string
	for i := range 3 {
		a, _ := mustCreate(t, s, alias.Spec{Target: "Some@Example.com", Expires: t0.Add(time.Duration(i+1) * day)})
		ids = append(ids, a.ID)
	}
	mustCreate(t, s, alias.Spec{Target: "other@example.com", Expires: t0.Add(day)})
	count := func(at time.Time) int {
		n, err := s.LiveForTarget("some@example.com", at)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count(t0); n != 3 {
		t.Fatalf("live for target: %d, want 3", n)
	}
	if err := s.RevokeID(ids[2], t0); err != nil {
		t.Fatal(err)
	}
	if n := count(t0); n != 2 {
		t.Fatalf("after revoke: %d, want 2", n)
	}
	if n := count(t0.Add(day + time.Second)); n != 1 {
		t.Fatalf("after one expired: %d, want 1", n)
	}
	if n, err := s.Sweep(t0.Add(day+time.Second), 10); n != 3 || err != nil {
		t.Fatalf("Sweep: %d %v, want the revoked and the two expired aliases", n, err)
	}
	if n := count(t0.Add(day + time.Second)); n != 1 {
		t.Fatalf("after the sweep: %d, want 1", n)
	}
	// The index entries of swept aliases go with them.
	mustView(t, s.db, func(tx *bolt.Tx) error {
		if n := tx.Bucket(bucketTargets).Stats().KeyN; n != 1 {
			t.Errorf("%d per-target index entries after the sweep, want 1 (the one live alias)", n)
		}
		return nil
	})
}

// The live-per-target limit is counted in the creating transaction, so
// concurrent creations cannot overshoot it.
func TestMaxLivePerTargetUnderConcurrency(t *testing.T) {
	s, _ := openStore(t, Options{})
	sp := spec(day, 0)
	sp.MaxLive = 3
	var wg sync.WaitGroup
	var mu sync.Mutex
	made, full := 0, 0
	for range 20 {
		wg.Go(func() {
			_, _, err := s.Create(sp, t0)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				made++
			case errors.Is(err, alias.ErrTargetFull):
				full++
			default:
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if made != 3 || full != 17 {
		t.Fatalf("made %d, refused %d; want 3 and 17", made, full)
	}
	if n, err := s.LiveForTarget(sp.Target, t0); n != 3 || err != nil {
		t.Fatalf("live for target: %d %v", n, err)
	}
}
