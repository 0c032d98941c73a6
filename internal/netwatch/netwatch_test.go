package netwatch

import (
	"context"
	"sync"
	"testing"
	"time"
)

// A burst of events yields one snapshot read and one callback; an event
// after which the snapshot is unchanged yields none.
func TestDebounce(t *testing.T) {
	tests := []struct {
		name  string
		snaps []Snapshot // what each read returns: the first is the start
		burst []int      // events per burst
		want  int        // callbacks
	}{
		{"one burst, one change", []Snapshot{{Addrs: []string{"a"}}, {Addrs: []string{"b"}}}, []int{5}, 1},
		{"no change", []Snapshot{{Addrs: []string{"a"}}, {Addrs: []string{"a"}}}, []int{3}, 0},
		{"two bursts, two changes", []Snapshot{{}, {Routes: []string{"r1"}}, {Routes: []string{"r2"}}}, []int{2, 4}, 2},
		{"change and back", []Snapshot{{Addrs: []string{"a"}}, {Addrs: []string{"b"}}, {Addrs: []string{"a"}}}, []int{1, 1}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			events := make(chan struct{}, 16)
			var mu sync.Mutex
			reads := 0
			snap := func() (Snapshot, error) {
				mu.Lock()
				defer mu.Unlock()
				s := tt.snaps[min(reads, len(tt.snaps)-1)]
				reads++
				return s, nil
			}
			got := make(chan [2]Snapshot, 8)
			w := newWatcher(Config{Quiet: 20 * time.Millisecond, MaxDelay: time.Second,
				OnChange: func(b, a Snapshot) { got <- [2]Snapshot{b, a} }}, events, snap, nil)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); w.Run(ctx) }()
			for _, n := range tt.burst {
				for i := 0; i < n; i++ {
					events <- struct{}{}
				}
				time.Sleep(100 * time.Millisecond) // longer than Quiet: the burst ends
			}
			cancel()
			<-done
			close(got)
			n := 0
			for c := range got {
				if c[0].Equal(c[1]) {
					t.Errorf("callback without a change: %v", c[0])
				}
				n++
			}
			if n != tt.want {
				t.Errorf("%d callbacks, want %d", n, tt.want)
			}
			if reads != 1+len(tt.burst) {
				t.Errorf("%d snapshot reads, want one at the start and one per burst (%d)", reads, 1+len(tt.burst))
			}
		})
	}
}

// Events that never stop still get a snapshot after MaxDelay.
func TestMaxDelay(t *testing.T) {
	events := make(chan struct{}, 1)
	reads := make(chan struct{}, 4)
	first := true
	snap := func() (Snapshot, error) {
		if first {
			first = false
			return Snapshot{}, nil
		}
		reads <- struct{}{}
		return Snapshot{Addrs: []string{"x"}}, nil
	}
	w := newWatcher(Config{Quiet: 50 * time.Millisecond, MaxDelay: 200 * time.Millisecond, OnChange: func(Snapshot, Snapshot) {}}, events, snap, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	go w.Run(ctx)
	tick := time.NewTicker(10 * time.Millisecond) // faster than Quiet
	defer tick.Stop()
	start := time.Now()
	for i := 0; i < 400; i++ {
		select {
		case <-reads:
			if el := time.Since(start); el > 2*time.Second {
				t.Fatalf("snapshot after %v of constant events, want about MaxDelay", el)
			}
			return
		case <-tick.C:
			select {
			case events <- struct{}{}:
			default:
			}
		}
	}
	t.Fatal("no snapshot while events kept coming")
}

func TestSnapshotEqual(t *testing.T) {
	a := Snapshot{Addrs: []string{"eth0 10.0.0.2/24"}, Routes: []string{"default via 10.0.0.1 dev eth0"}}
	b := Snapshot{Addrs: []string{"eth0 10.0.0.3/24"}, Routes: a.Routes}
	c := Snapshot{Addrs: a.Addrs, Routes: []string{"default via 10.0.0.254 dev eth0"}}
	if !a.Equal(a) || a.Equal(b) || a.Equal(c) || a.Equal(Snapshot{}) {
		t.Fatal("Equal is wrong")
	}
}
