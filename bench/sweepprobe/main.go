// Command sweepprobe times store look-ups in process while the store
// sweeps: the sweep part of bench/run.sh without SMTP, the network and the
// load generator, to tell the store's stalls from the rest. It opens a
// file made by `fill -expired -live N -sample-out live.txt`, runs -readers
// goroutines looking up unknown ids and live ones (Reserve, as an RCPT
// does; every third loop also commits the use, a durable write, as the
// end of DATA does) for -before, then sweeps everything due, and reports the slowest
// look-up and those over -slow before and during the sweep. -trace writes
// a runtime/trace of the whole run (go tool trace).
//
//	sweepprobe -file sweep.db -live live.txt [-batch 100] [-trace out.trace]
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"runtime/trace"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tempalias/tempalias/store/boltstore"
)

func main() {
	file := flag.String("file", "", "a bbolt data `file` of expired aliases (fill -expired)")
	liveFile := flag.String("live", "", "\"alias@domain target\" lines of live aliases (fill -sample-out)")
	readers := flag.Int("readers", 20, "concurrent look-up loops")
	pause := flag.Duration("pause", 500*time.Microsecond, "pause between one loop's look-ups")
	batch := flag.Int("batch", 100, "sweep batch (store.sweep_batch)")
	before := flag.Duration("before", 3*time.Second, "look-ups before the sweep starts")
	slow := flag.Duration("slow", 50*time.Millisecond, "count look-ups slower than this")
	sweepFor := flag.Duration("sweep-for", 0, "stop the sweep after this long (0: sweep everything due)")
	traceOut := flag.String("trace", "", "write a runtime/trace here")
	cpuOut := flag.String("cpuprofile", "", "write a CPU profile of the run here")
	mutexOut := flag.String("mutexprofile", "", "write a mutex contention profile of the run here (by the stacks that released the locks)")
	allocsOut := flag.String("memprofile", "", "write an allocation profile of the run here")
	flag.Parse()
	if *allocsOut != "" {
		defer writeProfile("allocs", *allocsOut)
	}
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400) // as tempalias's main does
	}
	if *mutexOut != "" {
		runtime.SetMutexProfileFraction(1)
		defer writeProfile("mutex", *mutexOut)
	}
	if *cpuOut != "" {
		f, err := os.Create(*cpuOut)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "sweepprobe:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	if err := run(*file, *liveFile, *readers, *pause, *batch, *before, *slow, *sweepFor, *traceOut); err != nil {
		fmt.Fprintln(os.Stderr, "sweepprobe:", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

func writeProfile(name, path string) {
	f, err := os.Create(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "sweepprobe:", err)
		return
	}
	defer f.Close()
	pprof.Lookup(name).WriteTo(f, 0)
}

type slowOp struct {
	at   time.Duration // since the start, when it began
	d    time.Duration
	kind string
}

func run(file, liveFile string, readers int, pause time.Duration, batch int, before, slow, sweepFor time.Duration, traceOut string) error {
	live, err := readLive(liveFile)
	if err != nil {
		return err
	}
	st, err := boltstore.Open(file, boltstore.Options{})
	if err != nil {
		return err
	}
	defer st.Close()
	if traceOut != "" {
		f, err := os.Create(traceOut)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := trace.Start(f); err != nil {
			return err
		}
		defer trace.Stop()
	}
	ctx, cancel := context.WithCancel(context.Background())
	t0 := time.Now()
	var sweepFrom, sweepTo atomic.Int64 // ns since t0
	sweepFrom.Store(1 << 62)
	sweepTo.Store(1 << 62)
	var mu sync.Mutex
	var slows []slowOp
	var maxBefore, maxDuring atomic.Int64
	var nOps atomic.Int64
	var wg sync.WaitGroup
	for i := range readers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			for ctx.Err() == nil {
				kind := "unknown"
				id := randomID(rng)
				switch i % 3 {
				case 1:
					kind, id = "live", live[rng.IntN(len(live))]
				case 2:
					kind, id = "commit", live[rng.IntN(len(live))]
				}
				start := time.Now()
				res, err := st.Reserve(ctx, id, start)
				if err == nil && kind == "commit" {
					err = res.Commit(ctx, start)
				}
				d := time.Since(start)
				if err == nil && kind == "live" {
					res.Refund(ctx, start)
				}
				nOps.Add(1)
				at := start.Sub(t0)
				during := int64(at) >= sweepFrom.Load() && int64(at) <= sweepTo.Load()
				m := &maxBefore
				if during {
					m = &maxDuring
				}
				for old := m.Load(); int64(d) > old && !m.CompareAndSwap(old, int64(d)); old = m.Load() {
				}
				if d > slow {
					mu.Lock()
					slows = append(slows, slowOp{at, d, kind})
					mu.Unlock()
				}
				time.Sleep(pause)
			}
		})
	}
	time.Sleep(before)
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	now := time.Now()
	sweepFrom.Store(int64(now.Sub(t0)))
	sweepCtx, stopSweep := ctx, context.CancelFunc(func() {})
	if sweepFor > 0 {
		sweepCtx, stopSweep = context.WithTimeout(ctx, sweepFor)
	}
	n, err := st.Sweep(sweepCtx, now, batch)
	stopSweep()
	sweepTo.Store(int64(time.Since(t0)))
	runtime.ReadMemStats(&ms1)
	cancel()
	wg.Wait()
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	sort.Slice(slows, func(i, j int) bool { return slows[i].at < slows[j].at })
	var during int
	for _, s := range slows {
		if int64(s.at) >= sweepFrom.Load() {
			during++
		}
	}
	fmt.Printf("{\"swept\":%d,\"sweep_s\":%.2f,\"ops\":%d,\"max_before_ms\":%.1f,\"max_during_ms\":%.1f,\"slow_before\":%d,\"slow_during\":%d,\"gcs_during\":%d,\"alloc_mb_during\":%.1f}\n",
		n, time.Duration(sweepTo.Load()-sweepFrom.Load()).Seconds(), nOps.Load(),
		float64(maxBefore.Load())/1e6, float64(maxDuring.Load())/1e6, len(slows)-during, during,
		ms1.NumGC-ms0.NumGC, float64(ms1.TotalAlloc-ms0.TotalAlloc)/(1<<20))
	for _, s := range slows {
		fmt.Fprintf(os.Stderr, "slow %s look-up at %.3fs: %.1f ms\n", s.kind, s.at.Seconds(), float64(s.d)/1e6)
	}
	return nil
}

const idChars = "0123456789abcdefghijklmnopqrstuvwxyz"

func randomID(rng *rand.Rand) string {
	b := make([]byte, 8)
	for i := range b {
		b[i] = idChars[rng.IntN(len(idChars))]
	}
	return string(b)
}

func readLive(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var ids []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if a, _, ok := strings.Cut(strings.Fields(sc.Text() + " ")[0], "@"); ok {
			ids = append(ids, a)
		}
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("%s: no aliases", path)
	}
	return ids, sc.Err()
}
