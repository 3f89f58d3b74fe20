package etcdstore

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tempalias/tempalias/alias"
	"github.com/tempalias/tempalias/internal/etcdtest"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestTLSAndAuth runs the engine against a cluster that takes clients
// only over TLS with a client certificate, with authentication on and a
// user allowed only under tempalias's prefix: the set-up docs/deploy.md
// describes.
func TestTLSAndAuth(t *testing.T) {
	cluster := etcdtest.Start(t, etcdtest.WithTLS())
	ctx := context.Background()
	tlsc := cluster.TLS().Config(t)
	admin, err := clientv3.New(clientv3.Config{Endpoints: cluster.Endpoints(), TLS: tlsc, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	const prefix = "/tempalias/"
	steps := []func() error{
		func() error { _, err := admin.UserAdd(ctx, "root", "root-secret"); return err },
		func() error { _, err := admin.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := admin.RoleAdd(ctx, "tempalias"); return err },
		func() error {
			_, err := admin.RoleGrantPermission(ctx, "tempalias", prefix, clientv3.GetPrefixRangeEnd(prefix), clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		},
		func() error { _, err := admin.UserAdd(ctx, "tempalias", "s3cret"); return err },
		func() error { _, err := admin.UserGrantRole(ctx, "tempalias", "tempalias"); return err },
		func() error { _, err := admin.AuthEnable(ctx); return err },
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("auth set-up step %d: %v", i, err)
		}
	}

	opts := Options{Endpoints: cluster.Endpoints(), Prefix: prefix, TLS: tlsc, Username: "tempalias", Password: "s3cret", DialTimeout: 5 * time.Second}
	s, err := Open(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Now()
	c, err := s.Create(ctx, alias.Spec{Target: "t@example.com", Expires: now.Add(time.Hour), MaxUsage: 1}, now)
	if err != nil {
		t.Fatal(err)
	}
	r, err := s.Reserve(ctx, c.Alias.ID, now)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Commit(ctx, now); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Sweep(ctx, now.Add(2*time.Hour), 10); err != nil || n != 1 {
		t.Fatalf("sweep as the prefix's user: %d, %v", n, err)
	}

	bad := opts
	bad.Password = "wrong"
	if _, err := Open(ctx, bad); err == nil || !strings.Contains(err.Error(), "authentication failed") {
		t.Fatalf("wrong password: %v", err)
	}
	noCert := opts
	noCert.TLS = tlsc.Clone()
	noCert.TLS.Certificates = nil
	noCert.DialTimeout = 2 * time.Second
	if _, err := Open(ctx, noCert); err == nil {
		t.Fatal("a client without a certificate was let in")
	} else if errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
}
