package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tempalias/tempalias/internal/etcdtest"
	"github.com/tempalias/tempalias/store/boltstore"
	"github.com/tempalias/tempalias/store/etcdstore"
	"github.com/tempalias/tempalias/store/storetest"
)

// The documented migration path, engine to engine: a bbolt store's export
// imported into an etcd cluster keeps every alias, counter, swept id,
// verified target and key (the same checks as the conformance suite's
// round trip, across engines).
func TestMigrateBoltToEtcd(t *testing.T) {
	cluster := etcdtest.Start(t)
	src, err := boltstore.Open(filepath.Join(t.TempDir(), "aliases.db"), boltstore.Options{IDMinLength: 1, GuessProbability: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	m := storetest.Fill(t, src)
	var buf bytes.Buffer
	if err := src.Export(context.Background(), &buf); err != nil {
		t.Fatal(err)
	}
	dst, err := etcdstore.Open(context.Background(), etcdstore.Options{
		Endpoints: cluster.Endpoints(), Prefix: "/migrate/", IDMinLength: 1, GuessProbability: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	if err := dst.Import(context.Background(), &buf); err != nil {
		t.Fatalf("Import: %v", err)
	}
	storetest.CheckMoved(t, dst, m)
}

// The migration as docs/deploy.md tells it, with the real binary: export
// from a running bbolt host (through the admin socket), stop it, import
// into the cluster, start two hosts on it; the alias, its token, its
// remaining uses and its relaying are the same.
func TestBinaryMigrateBoltToEtcd(t *testing.T) {
	cluster := etcdtest.Start(t)
	sk := startSinkWith(t, &sink{msgs: make(chan sunk, 10)})
	dir := t.TempDir()
	boltCfg := smarthostConfig(dir, sk.addr)
	boltPath := filepath.Join(dir, "bolt.toml")
	writeFile(t, boltPath, []byte(boltCfg), 0o600)
	old := start(t, boltCfg)
	status, got := httpDo(t, "POST", "http://"+old.addrs["http"]+"/aliases", `{"target":"t@example.com","max-usage":3}`)
	if status != 201 {
		t.Fatalf("create: %d %v", status, got)
	}
	id, addr, token := got["id"].(string), got["alias"].(string), got["token"].(string)
	if err := send(old.addrs["smtp"], addr); err != nil {
		t.Fatal(err)
	}
	sk.next(t)

	export := filepath.Join(dir, "aliases.jsonl")
	if out, err := adminCmd(t, boltPath, "export", export); err != nil || !strings.Contains(out, "export written to") {
		t.Fatalf("export while running: %v: %s", err, out)
	}
	if out, err := adminCmd(t, boltPath, "import", export); err == nil || !strings.Contains(out, "a server is running") {
		t.Errorf("import into a running server: %v: %s", err, out)
	}
	old.stop(t)

	etcdDir := t.TempDir()
	etcdCfg := clusterConfig(etcdDir, sk.addr, cluster, "/moved/")
	etcdPath := filepath.Join(etcdDir, "etcd.toml")
	writeFile(t, etcdPath, []byte(etcdCfg), 0o600)
	out, err := adminCmd(t, etcdPath, "import", export)
	if err != nil || !strings.Contains(out, "imported 1 aliases") {
		t.Fatalf("import into the cluster: %v: %s", err, out)
	}
	if out, err := adminCmd(t, etcdPath, "import", export); err == nil || !strings.Contains(out, "not empty") {
		t.Errorf("second import: %v: %s", err, out)
	}
	if out, err := adminCmd(t, etcdPath, "backup", filepath.Join(etcdDir, "b")); err == nil || !strings.Contains(out, "etcdctl snapshot save") {
		t.Errorf("backup on etcd: %v: %s", err, out)
	}
	a := start(t, etcdCfg)
	b := start(t, clusterConfig(t.TempDir(), sk.addr, cluster, "/moved/"))
	for _, p := range []*proc{a, b} {
		status, got := httpDo(t, "GET", "http://"+p.addrs["http"]+"/aliases/"+id, "", "Authorization", "Bearer "+token)
		if status != 200 || got["remaining"] != 2.0 {
			t.Fatalf("GET after the move: %d %v", status, got)
		}
	}
	if err := send(b.addrs["smtp"], addr); err != nil {
		t.Fatalf("relay after the move: %v", err)
	}
	sk.next(t)
	// Export works on the etcd engine too, to standard output.
	out, err = adminCmd(t, etcdPath, "export")
	if err != nil || !strings.HasPrefix(out, `{"tempalias-export":2,"engine":"etcd"`) || !strings.Contains(out, fmt.Sprintf(`"id":%q`, id)) || !strings.Contains(out, `"used":2`) {
		t.Errorf("export from etcd: %v: %s", err, out)
	}
	if _, err := os.Stat(export); err != nil {
		t.Fatal(err)
	}
}
