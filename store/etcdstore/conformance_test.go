package etcdstore

import (
	"testing"
	"time"

	"github.com/tempalias/tempalias/internal/etcdtest"
	"github.com/tempalias/tempalias/store"
	"github.com/tempalias/tempalias/store/storetest"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// The etcd engine keeps the store contract, on a real 3-member cluster.
// Each test has a key prefix of its own; its reopen closes the engine
// with its reservations unsettled and opens another on the same prefix.
// A new prefix is a new cluster to the engine: its records are binary.
func TestConformance(t *testing.T) {
	testConformance(t, "")
}

// On a cluster whose marker still says JSON (older hosts ran on it, see
// format.go), the contract holds the same.
func TestConformanceJSON(t *testing.T) {
	testConformance(t, "1")
}

func testConformance(t *testing.T, marker string) {
	cluster := etcdtest.Start(t)
	var cli *clientv3.Client
	if marker != "" {
		cli = rawClient(t, cluster)
	}
	storetest.Run(t, func(t *testing.T, o storetest.Options) (store.Engine, func() store.Engine) {
		opts := Options{LeaseTTL: 2 * time.Second}
		if o.TinyIDs {
			opts.IDMinLength, opts.GuessProbability = 1, 1
		}
		p := newPrefix()
		if marker != "" {
			put(t, cli, p+"meta/format", marker)
		}
		cur := open(t, cluster, p, opts)
		if want := map[string]int64{"": formatNewest, "1": formatJSON}[marker]; cur.format.Load() != want {
			t.Fatalf("writes format %d, want %d", cur.format.Load(), want)
		}
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
