package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tempalias/tempalias/alias"
	"github.com/tempalias/tempalias/store/boltstore"
)

// An empty or truncated data file stops start-up, and every admin command
// that would open it, with one line naming the file and saying to restore
// a backup: never a panic, never a new empty store in its place.
func TestBinaryDamagedDataFile(t *testing.T) {
	whole := filepath.Join(t.TempDir(), "whole.db")
	st, err := boltstore.Open(whole, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for range 50 {
		if _, err := st.Create(context.Background(), alias.Spec{Target: "t@example.com", Expires: now.Add(time.Hour)}, now); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(whole)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		data []byte
	}{{"empty", nil}, {"truncated", data[:2*4096]}, {"cut in the second meta page", data[:4096+100]}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := filepath.Join(dir, "tempalias.toml")
			writeFile(t, cfg, []byte(testConfig(dir)), 0o600)
			db := filepath.Join(dir, "aliases.db")
			writeFile(t, db, tc.data, 0o600)
			for _, args := range [][]string{
				{"-config", cfg},
				{"list", "-config", cfg},
				{"show", "-config", cfg, "abcdef"},
				{"backup", "-config", cfg, filepath.Join(dir, "backup.db")},
			} {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				out, err := exec.CommandContext(ctx, binary, args...).CombinedOutput()
				cancel()
				line := strings.TrimSpace(string(out))
				if err == nil || strings.Contains(line, "\n") || !strings.Contains(line, db) || !strings.Contains(line, "restore it from a backup") {
					t.Errorf("tempalias %s: %v, %q; want a failure in one line naming %s and the backup", strings.Join(args, " "), err, out, db)
				}
				if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == 2 {
					t.Errorf("tempalias %s exited 2 (a panic?): %s", strings.Join(args, " "), out)
				}
			}
			if got, err := os.ReadFile(db); err != nil || len(got) != len(tc.data) {
				t.Errorf("the data file was changed: %d bytes, %v", len(got), err)
			}
		})
	}
}
