package boltstore

import (
	"bufio"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tempalias/tempalias/alias"
)

// The child half of the damaged-file tests: it opens each file named in
// $BOLTSTORE_OPEN_FILES and says what happened, one line each. It runs in
// a process of its own because a panic inside bbolt's own goroutine would
// kill the test binary, and recover cannot reach it.
func TestOpenChild(t *testing.T) {
	files := os.Getenv("BOLTSTORE_OPEN_FILES")
	if files == "" {
		t.Skip("runs as a child of the damaged-file tests")
	}
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	for _, path := range strings.Split(files, "\n") {
		s, err := Open(path, Options{})
		if err != nil {
			fmt.Fprintf(out, "%s\tERR %v\n", path, err)
			continue
		}
		// Opened: the file must also be usable without a crash.
		err = s.Live(bg, t0, func(alias.Alias) bool { return true })
		if _, serr := s.Sweep(bg, t0.Add(365*day), 100); err == nil {
			err = serr
		}
		fmt.Fprintf(out, "%s\tOK %v\n", path, errors.Join(err, s.Close()))
	}
}

// openInChild opens every path in a child process and returns what each
// gave: "OK ..." or "ERR <the error>". The child must exit cleanly.
func openInChild(t *testing.T, paths []string) map[string]string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestOpenChild$", "-test.v")
	cmd.Env = append(os.Environ(), "BOLTSTORE_OPEN_FILES="+strings.Join(paths, "\n"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child opening damaged files died (%v):\n%s", err, out)
	}
	got := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		if path, res, ok := strings.Cut(line, "\t"); ok {
			got[path] = res
		}
	}
	for _, p := range paths {
		if _, ok := got[p]; !ok {
			t.Fatalf("child said nothing about %s:\n%s", p, out)
		}
	}
	return got
}

// damageSource is a closed store file with enough aliases for branch
// pages in the aliases bucket, and its reachable pages by type.
func damageSource(t *testing.T) (path string, data []byte, pageSize int64, hwm uint64, pages map[uint16][]uint64) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "source.db")
	st, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			for range 30 {
				if _, err := st.Create(bg, alias.Spec{Target: "t@example.com", Expires: t0.Add(day)}, t0); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	data, err = os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	c := &checker{data: data}
	if why := c.check(); why != "" {
		t.Fatalf("a whole file fails the check: %s", why)
	}
	pages = map[uint16][]uint64{}
	for id := range c.seen {
		flags := le.Uint16(data[int64(id)*c.pageSize+8:])
		pages[flags] = append(pages[flags], id)
	}
	for _, ids := range pages {
		sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	}
	if len(pages[branchPage]) == 0 || len(pages[leafPage]) < 2 {
		t.Fatalf("source file has no branch page: %v", pages)
	}
	return path, data, c.pageSize, c.hwm, pages
}

// An empty, truncated or damaged data file is refused with one line that
// names it and says to restore a backup; none makes Open panic.
func TestDamagedFilesRefused(t *testing.T) {
	_, data, ps, hwm, pages := damageSource(t)
	used := int64(hwm) * ps
	dir := t.TempDir()
	flip := func(off int64, mask byte) []byte {
		d := append([]byte(nil), data...)
		d[off] ^= mask
		return d
	}
	branch, leaf := int64(pages[branchPage][0])*ps, int64(pages[leafPage][0])*ps
	cases := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"truncated in the first page", data[:100]},
		{"truncated in the second page", data[:ps+100]},
		{"truncated after the meta pages", data[:2*ps]},
		{"truncated in half", data[:used/2]},
		{"truncated by one byte", data[:used-1]},
		{"meta 0 high-water mark", flip(metaOffset+40, 0x40)},
		{"meta 1 root page", flip(ps+metaOffset+16, 0x01)},
		{"meta 0 magic", flip(metaOffset, 0xff)},
		{"branch page id", flip(branch, 0x01)},
		{"branch page type", flip(branch+8, 0x06)},
		{"branch child", flip(branch+pageHeaderSize+8+3, 0x10)},
		{"leaf element count", flip(leaf+10, 0x80)},
		{"leaf key size", flip(leaf+pageHeaderSize+8+1, 0x40)},
		{"leaf key position", flip(leaf+pageHeaderSize+4+2, 0x20)},
	}
	var paths []string
	for i, c := range cases {
		p := filepath.Join(dir, fmt.Sprintf("case%02d.db", i))
		if err := os.WriteFile(p, c.data, 0o600); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	got := openInChild(t, paths)
	for i, c := range cases {
		res := got[paths[i]]
		if !strings.HasPrefix(res, "ERR ") || !strings.Contains(res, paths[i]) || !strings.Contains(res, "restore it from a backup") {
			t.Errorf("%s: %s; want it refused, naming the file and the backup", c.name, res)
		}
		if fi, err := os.Stat(paths[i]); err != nil || fi.Size() != int64(len(c.data)) {
			t.Errorf("%s: the refused file was changed", c.name)
		}
	}
}

// Bytes flipped anywhere in the used pages never crash Open or the use
// of what it opened: each file is refused, or opens and works (a flipped
// byte in a stored value is found when that record is read).
func TestRandomDamageNeverPanics(t *testing.T) {
	_, data, ps, hwm, _ := damageSource(t)
	used := int64(hwm) * ps
	rng := rand.New(rand.NewPCG(11, 12))
	var damage []func([]byte)
	for range 150 {
		flips := make(map[int64]byte)
		for range 1 + rng.IntN(3) {
			flips[rng.Int64N(used)] ^= byte(1 + rng.IntN(255))
		}
		damage = append(damage, func(d []byte) {
			for off, mask := range flips {
				d[off] ^= mask
			}
		})
	}
	refused := refusedInChild(t, data, damage)
	t.Logf("%d of %d damaged files refused, the rest opened without a crash", refused, len(damage))
}

// Damage aimed at what bbolt reads before and during its walk of every
// page (the meta pages it picks the tree by, and the header of every page
// of the tree: id, type, count, overflow), every byte with two masks:
// each file is refused, or opens and works, and none crashes the child.
func TestTargetedDamageNeverPanics(t *testing.T) {
	_, data, ps, _, pages := damageSource(t)
	var offsets []int64
	for id := range int64(2) {
		for off := range int64(pageHeaderSize + metaSize) {
			offsets = append(offsets, id*ps+off)
		}
	}
	for _, ids := range pages {
		for _, id := range ids {
			for off := range int64(pageHeaderSize) {
				offsets = append(offsets, int64(id)*ps+off)
			}
		}
	}
	var damage []func([]byte)
	for _, off := range offsets {
		for _, mask := range []byte{0x01, 0x80} {
			damage = append(damage, func(d []byte) { d[off] ^= mask })
		}
	}
	refused := refusedInChild(t, data, damage)
	t.Logf("%d of %d files damaged at a meta page or a page header refused, the rest opened without a crash", refused, len(damage))
}

// refusedInChild writes a copy of data for each of damage, damaged by
// it, opens them all in a child process (which must not crash) and
// counts those refused.
func refusedInChild(t *testing.T, data []byte, damage []func([]byte)) int {
	t.Helper()
	dir := t.TempDir()
	paths := make([]string, len(damage))
	for i, f := range damage {
		d := append([]byte(nil), data...)
		f(d)
		paths[i] = filepath.Join(dir, fmt.Sprintf("damaged%04d.db", i))
		if err := os.WriteFile(paths[i], d, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	refused := 0
	for _, res := range openInChild(t, paths) {
		if strings.HasPrefix(res, "ERR ") {
			refused++
		}
	}
	return refused
}

// A path that does not exist yet is a new store; a whole file opens; a
// file another process holds is left to bolt.Open, which names the lock
// (its pages change under a check).
func TestCheckFileAcceptsNewAndWhole(t *testing.T) {
	path := filepath.Join(t.TempDir(), "new.db")
	if err := checkFile(path); err != nil {
		t.Fatalf("new path: %v", err)
	}
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := checkFile(path); err != nil {
		t.Fatalf("whole file: %v", err)
	}
	held, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if _, err := Open(path, Options{OpenTimeout: 50 * time.Millisecond}); err == nil || !strings.Contains(err.Error(), "locked by another process") {
		t.Errorf("second Open of a held file: %v, want the lock named", err)
	}
}
