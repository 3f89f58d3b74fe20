package alias

import (
	"math"
	"strings"
	"testing"
)

func TestNewID(t *testing.T) {
	for _, n := range []int{0, 1, 6, 31, 32, 33, 100, MaxIDLength} {
		id := NewID(n)
		if len(id) != n {
			t.Errorf("NewID(%d) = %q, length %d", n, id, len(id))
		}
		if n > 0 && n <= MaxIDLength && !ValidID(id) {
			t.Errorf("NewID(%d) = %q is not a ValidID", n, id)
		}
		for i := 0; i < len(id); i++ {
			if strings.IndexByte(IDAlphabet, id[i]) < 0 {
				t.Fatalf("NewID(%d) = %q: %q is outside the alphabet", n, id, id[i])
			}
		}
	}
}

func TestNewIDCoversAlphabet(t *testing.T) {
	// 36*200 draws: each symbol is expected 200 times. A symbol drawn
	// fewer than 100 or more than 300 times means a broken sampler, not
	// bad luck (either is many standard deviations away).
	counts := make(map[byte]int)
	const perSymbol = 200
	id := NewID(len(IDAlphabet) * perSymbol)
	for i := 0; i < len(id); i++ {
		counts[id[i]]++
	}
	if len(counts) != len(IDAlphabet) {
		t.Fatalf("%d distinct symbols, want %d", len(counts), len(IDAlphabet))
	}
	for c, n := range counts {
		if n < perSymbol/2 || n > perSymbol*3/2 {
			t.Errorf("symbol %q drawn %d times, expected about %d", c, n, perSymbol)
		}
	}
}

func TestNewIDDistinct(t *testing.T) {
	seen := make(map[string]bool)
	for range 10000 {
		id := NewID(8)
		if seen[id] {
			t.Fatalf("NewID(8) repeated %q", id)
		}
		seen[id] = true
	}
}

func TestIDLength(t *testing.T) {
	tests := []struct {
		name   string
		issued uint64
		min    int
		p      float64
		want   int
	}{
		{"empty store, default p", 0, 6, 1e-6, 6},
		{"min honoured with p 1", 0, 6, 1, 6},
		{"min below 1 means 1", 0, 0, 1, 1},
		{"negative min means 1", 0, -3, 1, 1},
		{"min 1, p 1, first", 0, 1, 1, 1},
		{"min 1, p 1, 36th", 35, 1, 1, 1},
		{"min 1, p 1, 37th", 36, 1, 1, 2},
		{"min 1, p 1, 1296th", 1295, 1, 1, 2},
		{"min 1, p 1, 1297th", 1296, 1, 1, 3},
		{"default p, last of length 6", 2175, 6, 1e-6, 6},
		{"default p, first of length 7", 2176, 6, 1e-6, 7},
		{"default p, a million issued", 1_000_000, 6, 1e-6, 8},
		{"zero p falls back to default", 2176, 6, 0, 7},
		{"negative p falls back to default", 2176, 6, -1, 7},
		{"p over 1 falls back to default", 2176, 6, 2, 7},
		{"NaN p falls back to default", 2176, 6, math.NaN(), 7},
		{"p 1e-9 from empty", 0, 1, 1e-9, 6}, // 36^6 > 1e9 > 36^5
		{"capped at MaxIDLength", math.MaxUint64 - 1, 1, 1e-15, MaxIDLength},
		{"the most ids at default p", math.MaxUint64 - 1, 1, 1e-6, 17},
		{"min above the cap is kept", 0, MaxIDLength + 5, 1e-6, MaxIDLength + 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := IDLength(tt.issued, tt.min, tt.p); got != tt.want {
				t.Errorf("IDLength(%d, %d, %g) = %d, want %d", tt.issued, tt.min, tt.p, got, tt.want)
			}
		})
	}
}

func TestIDLengthGrowth(t *testing.T) {
	// min 1, p 1: the 36 one-character ids first, then two characters.
	var ones int
	for issued := uint64(0); ; issued++ {
		n := IDLength(issued, 1, 1)
		if n == 1 {
			ones++
			continue
		}
		if n != 2 {
			t.Fatalf("IDLength(%d, 1, 1) = %d after %d of length 1", issued, n, ones)
		}
		break
	}
	if ones != len(IDAlphabet) {
		t.Fatalf("%d ids of length 1, want %d", ones, len(IDAlphabet))
	}

	// The guarantee itself: at every length handed out, (issued+1) live
	// ids are at most a fraction p of the id space, and one character
	// less would not do (unless the minimum forced it).
	for _, p := range []float64{1, 0.5, 1e-3, 1e-6} {
		prev := 0
		for issued := uint64(0); issued < 5000; issued += 7 {
			n := IDLength(issued, 1, p)
			if n < prev {
				t.Fatalf("p %g: length shrank from %d to %d at %d", p, prev, n, issued)
			}
			prev = n
			space := math.Pow(36, float64(n))
			if float64(issued+1)/space > p {
				t.Fatalf("p %g, issued %d: length %d gives guess probability %g", p, issued, n, float64(issued+1)/space)
			}
			if n > 1 && float64(issued+1)/math.Pow(36, float64(n-1)) <= p {
				t.Fatalf("p %g, issued %d: length %d is longer than needed", p, issued, n)
			}
		}
	}
}

func TestValidID(t *testing.T) {
	tests := []struct {
		id   string
		want bool
	}{
		{"a", true},
		{"k3x9q2vd", true},
		{"0123456789", true},
		{strings.Repeat("z", MaxIDLength), true},
		{strings.Repeat("z", MaxIDLength+1), false},
		{"", false},
		{"K3X9", false},
		{"k3x9-q", false},
		{"k3x9.q", false},
		{"k3 x9", false},
		{"k3x9\n", false},
		{"k3x9@tempalias.example", false},
		{"../etc", false},
		{"é", false},
	}
	for _, tt := range tests {
		if got := ValidID(tt.id); got != tt.want {
			t.Errorf("ValidID(%q) = %v, want %v", tt.id, got, tt.want)
		}
	}
}
