package etcdstore

import (
	"context"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Writes whose keys overlap never share a batch: etcd evaluates every
// compare of a transaction, nested ones too, before applying any
// operation, so both would pass compares that the other's write should
// fail (two reservations of an alias's last use). (Checked against a
// real cluster: two nested transactions with the same compare on an
// empty range and puts of two different keys in it both succeed.)
func TestGather(t *testing.T) {
	s := &Store{p: "/p/"}
	ctx := context.Background()
	reserve := func(id, key string) *write {
		return newWrite(ctx, []clientv3.Cmp{
			clientv3.Compare(clientv3.ModRevision(s.aliasKey(id)), "=", 7),
			clientv3.Compare(clientv3.ModRevision(s.resPrefix(id)), "<", 8).WithPrefix(),
		}, []clientv3.Op{clientv3.OpPut(s.resPrefix(id)+key, "")})
	}
	commit := func(id, key string) *write {
		return newWrite(ctx, []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(s.aliasKey(id)), "=", 7)},
			[]clientv3.Op{clientv3.OpPut(s.aliasKey(id), "{}"), clientv3.OpDelete(s.resPrefix(id) + key)})
	}
	solo := newWrite(ctx, nil, []clientv3.Op{clientv3.OpDelete(s.p+"x/", clientv3.WithPrefix())})
	tests := []struct {
		name    string
		writes  []*write
		batch   int  // how many share the first's batch
		carried bool // the next one waits for another batch
	}{
		{"aliases of their own", []*write{reserve("abc", "k1"), reserve("def", "k2"), commit("ghi", "k3")}, 3, false},
		{"two reservations of one alias", []*write{reserve("abc", "k1"), reserve("abc", "k2"), reserve("def", "k3")}, 1, true},
		{"a reservation and a commit of one alias", []*write{reserve("abc", "k1"), commit("abc", "k0")}, 1, true},
		{"after one that does not fit", []*write{reserve("abc", "k1"), reserve("def", "k2"), reserve("abc", "k3"), reserve("ghi", "k4")}, 2, true},
		{"a range write alone", []*write{solo, reserve("abc", "k1")}, 1, false},
		{"nothing shares with a range write", []*write{reserve("abc", "k1"), solo}, 1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rest := tt.writes[1:]
			next := func() (*write, bool) {
				if len(rest) == 0 {
					return nil, false
				}
				w := rest[0]
				rest = rest[1:]
				return w, true
			}
			group, carry := gather(tt.writes[0], next)
			if len(group) != tt.batch || (carry != nil) != tt.carried {
				t.Fatalf("batch of %d, carried %v; want %d, %v", len(group), carry != nil, tt.batch, tt.carried)
			}
			if carry != nil && carry != tt.writes[tt.batch] {
				t.Fatal("carried another write than the one that did not fit")
			}
		})
	}
	// Past maxBatch, a new batch.
	var many []*write
	for i := 0; i < maxBatch+5; i++ {
		many = append(many, reserve(string(rune('a'+i%26))+string(rune('a'+i/26)), "k"))
	}
	i := 1
	group, _ := gather(many[0], func() (*write, bool) { i++; return many[i-1], i <= len(many) })
	if len(group) != maxBatch {
		t.Fatalf("batch of %d, want at most %d", len(group), maxBatch)
	}
}
