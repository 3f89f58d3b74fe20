package syncbuf

import (
	"fmt"
	"strings"
	"sync"
	"testing"
)

// Writers in many goroutines, a reader meanwhile (the race detector
// watches), and every write whole at the end.
func TestConcurrentWrites(t *testing.T) {
	var b Buffer
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 100 {
				fmt.Fprintf(&b, "w%d-%d\n", i, j)
			}
		})
	}
	_ = b.String()
	wg.Wait()
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if len(lines) != 800 {
		t.Fatalf("%d lines, want 800", len(lines))
	}
	seen := map[string]bool{}
	for _, l := range lines {
		seen[l] = true
	}
	for i := range 8 {
		for j := range 100 {
			if w := fmt.Sprintf("w%d-%d", i, j); !seen[w] {
				t.Fatalf("%s missing", w)
			}
		}
	}
}
