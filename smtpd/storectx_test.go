package smtpd

import (
	"context"
	"errors"
	"runtime"
	"testing"
	"time"
)

// callCtx answers as context.WithDeadline does with the same parent and
// deadline, whichever of Err, Done and Value is asked first, and whether
// the call is over by its deadline, its parent or its stop.
func TestCallCtxIsWithDeadline(t *testing.T) {
	type step int
	const (
		askErr step = iota
		askDone
		askValue
		stop
		cancelParent
	)
	past, future := -time.Second, time.Hour
	for _, tc := range []struct {
		name  string
		in    time.Duration // the deadline from now
		steps []step
		want  error // Err at the end
	}{
		{"running, Err only", future, []step{askErr}, nil},
		{"running, Done", future, []step{askDone, askErr}, nil},
		{"past deadline, Err only", past, []step{askErr}, context.DeadlineExceeded},
		{"past deadline, Err then Done", past, []step{askErr, askDone, askErr}, context.DeadlineExceeded},
		{"past deadline, Done first", past, []step{askDone, askErr}, context.DeadlineExceeded},
		{"stopped before Done", future, []step{stop, askErr, askDone, askErr}, context.Canceled},
		{"stopped after Done", future, []step{askDone, stop, askErr}, context.Canceled},
		{"stopped after Value", future, []step{askValue, stop, askErr}, context.Canceled},
		{"parent cancelled before Done", future, []step{cancelParent, askErr, askDone, askErr}, context.Canceled},
		{"parent cancelled after Done", future, []step{askDone, cancelParent, askErr}, context.Canceled},
		{"expired, then stopped", past, []step{askErr, stop, askDone, askErr}, context.DeadlineExceeded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			type key struct{}
			parent, cancelParentCtx := context.WithCancel(context.WithValue(context.Background(), key{}, "v"))
			defer cancelParentCtx()
			d := time.Now().Add(tc.in)
			ours := newCallCtx(parent, d)
			ref, cancelRef := context.WithDeadline(parent, d)
			defer cancelRef()
			for _, s := range tc.steps {
				switch s {
				case askErr:
					if g, w := ours.Err(), ref.Err(); g != w {
						t.Fatalf("Err %v, WithDeadline's %v", g, w)
					}
				case askDone:
					if g, w := closed(ours.Done()), closed(ref.Done()); g != w {
						t.Fatalf("Done closed %v, WithDeadline's %v", g, w)
					}
				case askValue:
					if v := ours.Value(key{}); v != "v" {
						t.Fatalf("Value %v, want the parent's", v)
					}
				case stop:
					ours.stop()
					cancelRef()
				case cancelParent:
					cancelParentCtx()
				}
			}
			if err := ours.Err(); !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Errorf("Err at the end %v, want %v", err, tc.want)
			}
			if got, ok := ours.Deadline(); !ok || !got.Equal(d) {
				t.Errorf("Deadline %v %v, want %v", got, ok, d)
			}
			if (ours.Err() != nil) != closed(ours.Done()) {
				t.Errorf("Err %v but Done closed %v", ours.Err(), closed(ours.Done()))
			}
		})
	}
}

// closed reports whether ch is closed now. Cancellation needs no wait:
// a parent's reaches its children before its CancelFunc returns.
func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// A caller that waits (etcd's client selects on Done) is woken at the
// deadline, and so is a context derived from ours.
func TestCallCtxDeadlineWakesWaiters(t *testing.T) {
	ctx := newCallCtx(context.Background(), time.Now().Add(20*time.Millisecond))
	defer ctx.stop()
	child, cancel := context.WithCancel(ctx)
	defer cancel()
	for name, done := range map[string]<-chan struct{}{"Done": ctx.Done(), "a child's Done": child.Done()} {
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s not closed 10 s after a 20 ms deadline", name)
		}
	}
	if !errors.Is(ctx.Err(), context.DeadlineExceeded) || !errors.Is(child.Err(), context.DeadlineExceeded) {
		t.Errorf("Err %v, child's %v; want DeadlineExceeded", ctx.Err(), child.Err())
	}
	if !errors.Is(context.Cause(child), context.DeadlineExceeded) {
		t.Errorf("child's Cause %v", context.Cause(child))
	}
}

// The parent's deadline, if earlier, is the call's.
func TestCallCtxParentDeadline(t *testing.T) {
	pd := time.Now().Add(time.Minute)
	parent, cancel := context.WithDeadline(context.Background(), pd)
	defer cancel()
	ctx := newCallCtx(parent, pd.Add(time.Hour))
	if d, ok := ctx.Deadline(); !ok || !d.Equal(pd) {
		t.Errorf("Deadline %v %v, want the parent's %v", d, ok, pd)
	}
}

// Where nobody waits, the call costs one allocation: no timer, nothing
// registered with the parent (context.WithDeadline: 4 allocations).
func TestCallCtxAllocs(t *testing.T) {
	parent, cancel := context.WithCancel(context.Background())
	defer cancel()
	d := time.Now().Add(time.Hour)
	if n := testing.AllocsPerRun(100, func() {
		ctx := newCallCtx(parent, d)
		if ctx.Err() != nil {
			t.Fatal("over")
		}
		ctx.stop()
	}); n > 1 {
		t.Errorf("%v allocations per call, want 1", n)
	}
}

// A context derived from ours registers with the WithDeadline context
// behind it, as with WithDeadline's own: no goroutine each to watch it.
func TestCallCtxChildrenNeedNoGoroutine(t *testing.T) {
	ctx := newCallCtx(context.Background(), time.Now().Add(time.Hour))
	defer ctx.stop()
	before := runtime.NumGoroutine()
	var cancels []context.CancelFunc
	for range 100 {
		_, cancel := context.WithCancel(ctx)
		cancels = append(cancels, cancel)
	}
	after := runtime.NumGoroutine()
	for _, c := range cancels {
		c()
	}
	if after-before >= 50 {
		t.Errorf("100 children started %d goroutines", after-before)
	}
}
