package boltstore

import (
	"bytes"
	"github.com/tempalias/tempalias/store"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// An unknown confirmation token (anyone can post one) is answered without
// a write, and the file keeps targets only as keyed hashes.
func TestConfirmGuessesAndHashedTargets(t *testing.T) {
	s, _ := openStore(t, Options{})
	c, err := s.Create(bg, spec(3*day, 2), t0, store.Pending())
	if err != nil {
		t.Fatal(err)
	}
	confirm := c.Confirm
	before := lastTx(t, s)
	if _, err := s.Confirm(bg, "wrong"+confirm, t0, 90*day); err != store.ErrNotFound {
		t.Fatalf("wrong token: %v", err)
	}
	if lastTx(t, s) != before {
		t.Error("an unknown confirmation token caused a write")
	}
	if _, err := s.Confirm(bg, confirm, t0, 90*day); err != nil {
		t.Fatal(err)
	}
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
