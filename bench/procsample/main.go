// Command procsample samples, every -every, what the machine's CPUs and a
// few processes did since the last sample, to line up latency stalls with
// who had the CPU: the machine's /proc/stat (user, system, idle, iowait,
// steal, in USER_HZ ticks), the CPU pressure stall total
// (/proc/pressure/cpu "some", µs), and for each watched process the sums
// over its threads of /proc/PID/task/TID/schedstat (ns on a CPU, ns
// runnable in a run queue and not running) with how many threads were
// running or runnable (R) and in uninterruptible sleep (D, a disk read of
// a page fault, say), and its minor and major page faults.
//
//	procsample -watch ta=PID,lg1=PID -every 10ms -d 120s > samples.txt
//
// One line a sample, space-separated: the time (Unix ns), user nice system
// idle iowait irq softirq steal, psi-some-µs, then per watched process (in
// -watch order) run-ns wait-ns threads-R threads-D minflt majflt; every
// value cumulative except the thread counts, so that a window's figure is
// the difference of two lines. A header line starting with # names the
// columns. It stops after -d, or when every watched process is gone.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

type proc struct {
	name string
	pid  int
}

func main() {
	watch := flag.String("watch", "", "name=PID,... processes to sample")
	every := flag.Duration("every", 10*time.Millisecond, "sampling interval")
	d := flag.Duration("d", 10*time.Minute, "longest run")
	flag.Parse()
	var procs []proc
	for _, item := range strings.Split(*watch, ",") {
		if item == "" {
			continue
		}
		name, pid, ok := strings.Cut(item, "=")
		n, err := strconv.Atoi(pid)
		if !ok || err != nil {
			fmt.Fprintf(os.Stderr, "procsample: bad -watch item %q (want name=PID)\n", item)
			os.Exit(2)
		}
		procs = append(procs, proc{name, n})
	}
	w := bufio.NewWriterSize(os.Stdout, 1<<16)
	defer w.Flush()
	fmt.Fprint(w, "# t_ns user nice system idle iowait irq softirq steal psi_some_us")
	for _, p := range procs {
		for _, c := range []string{"run_ns", "wait_ns", "nR", "nD", "minflt", "majflt"} {
			fmt.Fprintf(w, " %s.%s", p.name, c)
		}
	}
	fmt.Fprintln(w)
	end := time.Now().Add(*d)
	t := time.NewTicker(*every)
	defer t.Stop()
	var buf []byte
	for now := range t.C {
		if now.After(end) {
			return
		}
		buf = buf[:0]
		buf = strconv.AppendInt(buf, time.Now().UnixNano(), 10)
		buf = appendStat(buf)
		buf = appendPSI(buf)
		alive := 0
		for _, p := range procs {
			var ok bool
			buf, ok = appendProc(buf, p.pid)
			if ok {
				alive++
			}
		}
		buf = append(buf, '\n')
		w.Write(buf)
		if alive == 0 && len(procs) > 0 {
			return
		}
	}
}

func readFile(path string) []byte {
	b, _ := os.ReadFile(path)
	return b
}

// appendStat appends the aggregate cpu line's first eight fields.
func appendStat(buf []byte) []byte {
	b := readFile("/proc/stat")
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := bytes.Fields(line)
	for i := 1; i <= 8; i++ {
		buf = append(buf, ' ')
		if i < len(f) {
			buf = append(buf, f[i]...)
		} else {
			buf = append(buf, '0')
		}
	}
	return buf
}

func appendPSI(buf []byte) []byte {
	b := readFile("/proc/pressure/cpu")
	line, _, _ := bytes.Cut(b, []byte("\n"))
	_, total, ok := bytes.Cut(line, []byte("total="))
	buf = append(buf, ' ')
	if !ok {
		return append(buf, '0')
	}
	return append(buf, bytes.TrimSpace(total)...)
}

// appendProc appends run-ns wait-ns nR nD minflt majflt of pid (zeros
// once it is gone) and whether it still exists.
func appendProc(buf []byte, pid int) ([]byte, bool) {
	dir := "/proc/" + strconv.Itoa(pid)
	var minflt, majflt uint64
	st := readFile(dir + "/stat")
	if len(st) == 0 {
		return append(buf, " 0 0 0 0 0 0"...), false
	}
	if f := statFields(st); len(f) > 9 {
		minflt, _ = strconv.ParseUint(string(f[7]), 10, 64)
		majflt, _ = strconv.ParseUint(string(f[9]), 10, 64)
	}
	var run, wait uint64
	var nR, nD int
	tasks, _ := os.ReadDir(dir + "/task")
	for _, t := range tasks {
		td := dir + "/task/" + t.Name()
		if f := bytes.Fields(readFile(td + "/schedstat")); len(f) >= 2 {
			r, _ := strconv.ParseUint(string(f[0]), 10, 64)
			q, _ := strconv.ParseUint(string(f[1]), 10, 64)
			run += r
			wait += q
		}
		if f := statFields(readFile(td + "/stat")); len(f) > 0 && len(f[0]) > 0 {
			switch f[0][0] {
			case 'R':
				nR++
			case 'D':
				nD++
			}
		}
	}
	buf = fmt.Appendf(buf, " %d %d %d %d %d %d", run, wait, nR, nD, minflt, majflt)
	return buf, true
}

// statFields are a /proc stat line's fields after the command name (which
// may hold spaces): state first.
func statFields(b []byte) [][]byte {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil
	}
	return bytes.Fields(b[i+1:])
}
