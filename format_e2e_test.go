package main

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tempalias/tempalias/alias"
	"github.com/tempalias/tempalias/internal/etcdtest"
	"github.com/tempalias/tempalias/store/etcdstore"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// The etcd record format's upgrade as README tells it, with the real
// binary: a cluster whose hosts still write JSON, store-format showing
// it, -raise rewriting the records as binary (and again, with nothing
// left to do), and a marker newer than this version stopping start-up
// and the command with one line that says so. The bolt engine has no
// such format.
func TestBinaryStoreFormat(t *testing.T) {
	cluster := etcdtest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	prefix := "/format/"
	cli, err := clientv3.New(clientv3.Config{Endpoints: cluster.Endpoints(), DialTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	// A cluster as the hosts before the binary record left it.
	if _, err := cli.Put(ctx, prefix+"meta/format", "1"); err != nil {
		t.Fatal(err)
	}
	st, err := etcdstore.Open(ctx, etcdstore.Options{Endpoints: cluster.Endpoints(), Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for range 2 {
		if _, err := st.Create(ctx, alias.Spec{Target: "t@example.com", Expires: now.Add(time.Hour), MaxUsage: 2}, now); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	cfg := filepath.Join(dir, "etcd.toml")
	writeFile(t, cfg, []byte(clusterConfig(dir, "127.0.0.1:1", cluster, prefix)), 0o600)
	for _, step := range []struct {
		args []string
		want []string
	}{
		{[]string{"store-format"}, []string{"record format 1 (JSON)\n", "records: 2 JSON, 0 binary, 0 swept ids\n"}},
		{[]string{"store-format", "-raise"}, []string{"record format 2 (binary): 2 records rewritten\n", "records: 0 JSON, 2 binary, 0 swept ids\n"}},
		{[]string{"store-format", "-raise"}, []string{"record format 2 (binary): 0 records rewritten\n"}},
		{[]string{"list"}, []string{"t@example.com"}},
	} {
		out, err := adminCmd(t, cfg, step.args...)
		if err != nil {
			t.Fatalf("%s: %v: %s", strings.Join(step.args, " "), err, out)
		}
		for _, w := range step.want {
			if !strings.Contains(out, w) {
				t.Errorf("%s: %q, want %q", strings.Join(step.args, " "), out, w)
			}
		}
	}

	if _, err := cli.Put(ctx, prefix+"meta/format", "3"); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"-config", cfg}, {"store-format", "-config", cfg}, {"store-format", "-raise", "-config", cfg}} {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		out, err := exec.CommandContext(cctx, binary, args...).CombinedOutput()
		cancel()
		line := strings.TrimSpace(string(out))
		if err == nil || strings.Contains(line, "\n") || !strings.Contains(line, "records are in format 3") || !strings.Contains(line, "newer than this version knows (2)") {
			t.Errorf("tempalias %s over format 3: %v, %q; want a failure in one line saying so", strings.Join(args, " "), err, out)
		}
	}

	boltCfg := filepath.Join(dir, "bolt.toml")
	writeFile(t, boltCfg, []byte(testConfig(dir)), 0o600)
	if out, err := adminCmd(t, boltCfg, "store-format"); err == nil || !strings.Contains(out, "only the etcd engine") {
		t.Errorf("store-format on the bolt engine: %v, %q", err, out)
	}
}
