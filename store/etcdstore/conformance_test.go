package etcdstore

import (
	"testing"
	"time"

	"github.com/tempalias/tempalias/internal/etcdtest"
	"github.com/tempalias/tempalias/store"
	"github.com/tempalias/tempalias/store/storetest"
)

// The etcd engine keeps the store contract, on a real 3-member cluster.
// Each test has a key prefix of its own; its reopen closes the engine
// with its reservations unsettled and opens another on the same prefix.
func TestConformance(t *testing.T) {
	cluster := etcdtest.Start(t)
	storetest.Run(t, func(t *testing.T, o storetest.Options) (store.Engine, func() store.Engine) {
		opts := Options{LeaseTTL: 2 * time.Second}
		if o.TinyIDs {
			opts.IDMinLength, opts.GuessProbability = 1, 1
		}
		p := newPrefix()
		cur := open(t, cluster, p, opts)
		reopen := func() store.Engine {
			if err := cur.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			cur = open(t, cluster, p, opts)
			return cur
		}
		return cur, reopen
	})
}

// The limits the store counts hold across two hosts on one cluster at
// once.
func TestConformanceShared(t *testing.T) {
	cluster := etcdtest.Start(t)
	storetest.RunShared(t, func(t *testing.T) (store.Engine, store.Engine) {
		p := newPrefix()
		return open(t, cluster, p, Options{}), open(t, cluster, p, Options{})
	})
}

// Every host of one cluster signs revoke links with one key.
func TestLinkKeyShared(t *testing.T) {
	cluster := etcdtest.Start(t)
	p := newPrefix()
	a, b := open(t, cluster, p, Options{}), open(t, cluster, p, Options{})
	if string(a.LinkKey()) != string(b.LinkKey()) || len(a.LinkKey()) != 32 || string(a.LinkKey()) == string(a.targetKey) {
		t.Fatalf("link keys %x and %x", a.LinkKey(), b.LinkKey())
	}
}
