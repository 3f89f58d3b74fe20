// Command fill creates many aliases in a tempalias data file directly
// through the store package (boltstore.Open / Create, so ids, records and
// the expiry index are exactly what the server writes), from many
// goroutines at once so that the group commit packs them into large
// transactions. It then optionally times in-process look-ups.
//
//	fill -file big.db -n 1000000                      live aliases (60 days)
//	fill -file sweep.db -n 1000000 -expired -live 100 -sample-out live.txt
//	fill -file big.db -n 1000000 -lookups 200000      also time store.Get
//
// It prints one JSON line on stdout and a human summary on stderr. The file
// must not be open in a running tempalias.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tempalias/tempalias/alias"
	"github.com/tempalias/tempalias/store"
	"github.com/tempalias/tempalias/store/boltstore"
)

func main() {
	file := flag.String("file", "", "the bbolt data `file` (created if missing)")
	n := flag.Int("n", 1000000, "aliases to create")
	expired := flag.Bool("expired", false, "create them already expired (one hour ago), for the sweeper")
	days := flag.Int("days", 60, "lifetime of the created aliases when not -expired")
	live := flag.Int("live", 0, "also create this many live aliases (60 days, no use limit) and list them in -sample-out")
	sample := flag.Int("sample", 0, "list this many of the -n aliases in -sample-out")
	sampleOut := flag.String("sample-out", "", "write \"alias@domain target\" lines here")
	domain := flag.String("domain", "bench.test", "alias domain for -sample-out")
	target := flag.String("target", "rcpt@example.net", "target of every alias")
	workers := flag.Int("workers", 4000, "concurrent creators")
	batch := flag.Int("batch", 4000, "largest group commit (boltstore.Options.MaxBatch)")
	lookups := flag.Int("lookups", 0, "after filling, reopen the file and time this many store.Get of random existing ids and as many of unknown ids")
	maxTime := flag.Duration("max-time", 20*time.Minute, "give up after this long")
	flag.Parse()
	if *file == "" {
		fmt.Fprintln(os.Stderr, "fill: -file is required")
		os.Exit(2)
	}
	if err := run(*file, *n, *expired, *days, *live, *sample, *sampleOut, *domain, *target,
		*workers, *batch, *lookups, *maxTime); err != nil {
		fmt.Fprintln(os.Stderr, "fill:", err)
		os.Exit(1)
	}
}

func run(file string, n int, expired bool, days, live, sample int, sampleOut, domain, target string,
	workers, batch, lookups int, maxTime time.Duration) error {
	ctx := context.Background()
	st, err := boltstore.Open(file, boltstore.Options{MaxBatch: batch})
	if err != nil {
		return err
	}
	now := time.Now().UTC().Truncate(time.Second)
	expires := now.Add(time.Duration(days) * 24 * time.Hour)
	if expired {
		expires = now.Add(-time.Hour)
	}
	spec := alias.Spec{Target: target, Expires: expires}

	needIDs := lookups > 0 || sample > 0
	ids := make([]string, 0)
	var idsMu sync.Mutex
	var next, done atomic.Int64
	var firstErr atomic.Value
	deadline := time.Now().Add(maxTime)
	t0 := time.Now()
	stopProgress := make(chan struct{})
	go func() {
		t := time.NewTicker(10 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-stopProgress:
				return
			case <-t.C:
				d := done.Load()
				fmt.Fprintf(os.Stderr, "fill: %d/%d after %.0fs (%.0f/s)\n", d, n, time.Since(t0).Seconds(),
					float64(d)/time.Since(t0).Seconds())
			}
		}
	}()
	var wg sync.WaitGroup
	for range max(workers, 1) {
		wg.Go(func() {
			var mine []string
			for next.Add(1) <= int64(n) && time.Now().Before(deadline) {
				c, err := st.Create(ctx, spec, now)
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				done.Add(1)
				if needIDs {
					mine = append(mine, c.Alias.ID)
				}
			}
			if needIDs {
				idsMu.Lock()
				ids = append(ids, mine...)
				idsMu.Unlock()
			}
		})
	}
	wg.Wait()
	close(stopProgress)
	fillTime := time.Since(t0)
	if err, _ := firstErr.Load().(error); err != nil {
		st.Close()
		return err
	}
	if int(done.Load()) != n {
		st.Close()
		return fmt.Errorf("only %d of %d aliases created within -max-time %v", done.Load(), n, maxTime)
	}

	var liveIDs []string
	for range live {
		c, err := st.Create(ctx, alias.Spec{Target: target, Expires: now.Add(60 * 24 * time.Hour)}, now)
		if err != nil {
			st.Close()
			return err
		}
		liveIDs = append(liveIDs, c.Alias.ID)
	}
	stats, err := st.Stats(ctx)
	if err != nil {
		st.Close()
		return err
	}
	if err := st.Close(); err != nil {
		return err
	}
	fi, err := os.Stat(file)
	if err != nil {
		return err
	}

	if sampleOut != "" {
		f, err := os.Create(sampleOut)
		if err != nil {
			return err
		}
		for _, id := range liveIDs {
			fmt.Fprintf(f, "%s@%s %s\n", id, domain, target)
		}
		for i := 0; i < sample && i < len(ids); i++ {
			fmt.Fprintf(f, "%s@%s %s\n", ids[i*len(ids)/sample], domain, target)
		}
		if err := f.Close(); err != nil {
			return err
		}
	}

	out := map[string]any{
		"aliases":         stats.Aliases,
		"issued":          stats.Issued,
		"expired":         expired,
		"fill_seconds":    math.Round(fillTime.Seconds()*100) / 100,
		"fill_per_s":      math.Round(float64(n) / fillTime.Seconds()),
		"file_bytes":      fi.Size(),
		"bytes_per_alias": math.Round(float64(fi.Size()) / float64(max(stats.Aliases, 1))),
	}
	if lookups > 0 && len(ids) > 0 {
		hit, miss, err := timeLookups(file, ids, lookups, expired)
		if err != nil {
			return err
		}
		out["lookups"] = lookups
		out["get_hit_p50_us"], out["get_hit_p99_us"], out["get_hit_max_us"] = hit[0], hit[1], hit[2]
		out["get_miss_p50_us"], out["get_miss_p99_us"], out["get_miss_max_us"] = miss[0], miss[1], miss[2]
	}
	b, _ := json.Marshal(out)
	fmt.Println(string(b))
	fmt.Fprintf(os.Stderr, "fill: %d aliases (%d ids issued) in %.1fs = %.0f/s; file %.1f MiB (%.0f bytes/alias)\n",
		stats.Aliases, stats.Issued, fillTime.Seconds(), float64(n)/fillTime.Seconds(),
		float64(fi.Size())/(1<<20), float64(fi.Size())/float64(max(stats.Aliases, 1)))
	if v, ok := out["get_hit_p99_us"]; ok {
		fmt.Fprintf(os.Stderr, "fill: store.Get over %d aliases, %d look-ups each: hit p50 %vµs p99 %vµs max %vµs; miss p50 %vµs p99 %vµs max %vµs\n",
			stats.Aliases, lookups, out["get_hit_p50_us"], v, out["get_hit_max_us"],
			out["get_miss_p50_us"], out["get_miss_p99_us"], out["get_miss_max_us"])
	}
	return nil
}

// timeLookups reopens the file (a fresh mmap, as after a restart; the page
// cache stays warm) and times store.Get one call at a time: random existing
// ids, then random ids of the same length that were never issued. It
// returns p50, p99 and max in microseconds for each.
func timeLookups(file string, ids []string, n int, expired bool) (hit, miss [3]float64, err error) {
	ctx := context.Background()
	st, err := boltstore.Open(file, boltstore.Options{})
	if err != nil {
		return hit, miss, err
	}
	defer st.Close()
	now := time.Now()
	rng := rand.New(rand.NewPCG(1, 2))
	lat := make([]time.Duration, n)
	for i := range n {
		id := ids[rng.IntN(len(ids))]
		t0 := time.Now()
		_, err := st.Get(ctx, id, now)
		lat[i] = time.Since(t0)
		if err != nil && !expired {
			return hit, miss, fmt.Errorf("Get(%s): %w", id, err)
		}
	}
	hit = pct(lat)
	idLen := len(ids[0])
	const chars = "0123456789abcdefghijklmnopqrstuvwxyz"
	b := make([]byte, idLen)
	for i := range n {
		for j := range b {
			b[j] = chars[rng.IntN(len(chars))]
		}
		t0 := time.Now()
		_, err := st.Get(ctx, string(b), now)
		lat[i] = time.Since(t0)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return hit, miss, err
		}
	}
	miss = pct(lat)
	return hit, miss, nil
}

func pct(lat []time.Duration) [3]float64 {
	s := slices.Clone(lat)
	slices.Sort(s)
	us := func(d time.Duration) float64 { return math.Round(float64(d)/10) / 100 }
	return [3]float64{us(s[len(s)/2]), us(s[len(s)*99/100]), us(s[len(s)-1])}
}
