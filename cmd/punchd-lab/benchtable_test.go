package main

import (
	"errors"
	"strings"
	"testing"

	"github.com/punchd/punchd/internal/bench"
	"github.com/punchd/punchd/internal/lab"
)

func sample(tcp1 float64, turn string) *benchSample {
	return &benchSample{res: map[string]bench.Result{"tcp1": {Bps: tcp1}}, turn: turn}
}

func TestRatiosPerRound(t *testing.T) {
	failed := &benchSample{err: errors.New("no path")}
	rows := []*benchRow{
		{topo: lab.NATNone, path: pathStock, runs: []*benchSample{sample(2e9, ""), sample(1e9, ""), sample(2e9, "")}},
		{topo: lab.NATNone, path: pathDirect, runs: []*benchSample{sample(2e9, ""), sample(2e9, ""), failed}},
		{topo: lab.NATPortRestricted, path: pathStock, runs: []*benchSample{sample(4e9, "")}},
	}
	tests := []struct {
		row  *benchRow
		ref  benchPath
		want []float64
	}{
		// Round by round: a slow stock round pairs with its own punchd round.
		{rows[1], pathStock, []float64{1, 2}},
		{rows[1], pathCoturn, nil},
		{rows[0], pathStock, []float64{1, 1, 1}},
	}
	for _, tt := range tests {
		got := tt.row.ratios(rows, tt.ref)
		if len(got) != len(tt.want) {
			t.Fatalf("%s vs %s: %v, want %v", tt.row.path.name, tt.ref.name, got, tt.want)
		}
		for i := range got {
			if got[i] != tt.want[i] {
				t.Errorf("%s vs %s: %v, want %v", tt.row.path.name, tt.ref.name, got, tt.want)
			}
		}
	}
}

func TestTurnTransports(t *testing.T) {
	tests := []struct {
		in   []*benchSample
		want string
	}{
		{[]*benchSample{sample(1, "")}, "-"},
		{[]*benchSample{sample(1, "udp/udp"), sample(1, "udp/udp")}, "udp/udp"},
		{[]*benchSample{sample(1, "udp/udp"), sample(1, "tcp/udp"), sample(1, "udp/udp")}, "udp/udp:2 tcp/udp:1"},
	}
	for _, tt := range tests {
		if got := turnTransports(tt.in); got != tt.want {
			t.Errorf("turnTransports = %q, want %q", got, tt.want)
		}
	}
}

func TestPrintBench(t *testing.T) {
	rows := []*benchRow{
		{topo: lab.NATNone, path: pathStock, runs: []*benchSample{sample(2e9, ""), sample(3e9, "")}},
		{topo: lab.NATNone, path: pathOwn, runs: []*benchSample{sample(1e9, "udp/udp"), sample(1.2e9, "udp/udp")}},
		{topo: lab.NATNone, path: pathCoturn, runs: []*benchSample{sample(1e9, "udp/udp"), {err: errors.New("no path:\n  timeout")}}},
		{topo: lab.NATNone, path: pathRaw, runs: []*benchSample{{err: errors.New("boom")}}},
	}
	var b strings.Builder
	printBench(&b, rows, 2)
	out := b.String()
	for _, want := range []string{
		"x1 min-max", "2.00-3.00", // stock's range over the rounds
		"1.10", "1.00x", // own TURN: median Gbit/s, and against coturn in round 1
		"(1 of 2 rounds failed)",
		"FAILED: boom",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}
