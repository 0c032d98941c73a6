package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/punchd/punchd/internal/bench"
)

// coturnTwin is the coturn path an own-TURN path is compared with: the
// same transport to the relay.
func coturnTwin(p benchPath) (benchPath, bool) {
	switch p {
	case pathOwn:
		return pathCoturn, true
	case pathOwnTLS:
		return pathCoturnTLS, true
	}
	return benchPath{}, false
}

// printBench writes one line per topology and path: medians over the
// rounds that worked, and the TCP x1 range when there were several.
func printBench(w io.Writer, rows []*benchRow, runs int) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	head := []string{"TOPOLOGY", "PATH", "TCP x1 Gbit/s"}
	if runs > 1 {
		head = append(head, "x1 min-max")
	}
	head = append(head, "TCP x4 Gbit/s", "UDP Gbit/s", "TCP x1 vs wg-go", "vs coturn", "x1 retrans", "x1 UDP drops",
		"CPU s/GB daemons", "CPU s/GB relay", "RSS MiB idle/load", "ping avg ms", "TURN a/b")
	fmt.Fprintln(tw, strings.Join(head, "\t"))
	for _, r := range rows {
		ok := r.ok()
		if len(ok) == 0 {
			fmt.Fprintf(tw, "%s\t%s\tFAILED: %s\n", r.topo, r.path.name, strings.Join(strings.Fields(r.runs[len(r.runs)-1].err.Error()), " "))
			continue
		}
		med := func(f func(*benchSample) float64) float64 {
			var v []float64
			for _, s := range ok {
				v = append(v, f(s))
			}
			return bench.Median(v)
		}
		gbps := func(test string) func(*benchSample) float64 {
			return func(s *benchSample) float64 { return s.res[test].Bps / 1e9 }
		}
		cols := []string{string(r.topo), r.path.name, fmt.Sprintf("%.2f", med(gbps("tcp1")))}
		if runs > 1 {
			lo, hi := minMax(ok, gbps("tcp1"))
			cols = append(cols, fmt.Sprintf("%.2f-%.2f", lo, hi))
		}
		cols = append(cols, fmt.Sprintf("%.2f", med(gbps("tcp4"))), fmt.Sprintf("%.2f", med(gbps("udp"))))
		ratio, vsCoturn, cpu, relay, rss := "-", "-", "-", "-", "-"
		if ratios := r.ratios(rows, pathStock); len(ratios) > 0 && r.path != pathRaw {
			ratio = fmt.Sprintf("%.2fx", bench.Median(ratios))
		}
		if twin, ok := coturnTwin(r.path); ok {
			if ratios := r.ratios(rows, twin); len(ratios) > 0 {
				vsCoturn = fmt.Sprintf("%.2fx", bench.Median(ratios))
			}
		}
		if r.path != pathRaw {
			cpu = fmt.Sprintf("%.1f", med(func(s *benchSample) float64 { return s.res["tcp1"].CPUPerGB() }))
			rss = fmt.Sprintf("%.1f/%.1f",
				med(func(s *benchSample) float64 { return float64(s.res["tcp1"].RSSIdle) / 1024 }),
				med(func(s *benchSample) float64 { return float64(s.res["tcp1"].RSSLoad) / 1024 }))
		}
		if r.path.relayed() {
			relay = fmt.Sprintf("%.1f", med(func(s *benchSample) float64 {
				if s.res["tcp1"].Bytes == 0 {
					return 0
				}
				return s.relayCPU["tcp1"].Seconds() / (s.res["tcp1"].Bytes / 1e9)
			}))
		}
		cols = append(cols, ratio, vsCoturn,
			fmt.Sprintf("%.0f", med(func(s *benchSample) float64 { return float64(s.res["tcp1"].Retrans) })),
			fmt.Sprintf("%.0f", med(func(s *benchSample) float64 { return float64(s.drops["tcp1"]) })),
			cpu, relay, rss,
			fmt.Sprintf("%.3f", med(func(s *benchSample) float64 { return float64(s.rtt.Microseconds()) / 1000 })),
			turnTransports(ok))
		line := strings.Join(cols, "\t")
		if failed := len(r.runs) - len(ok); failed > 0 {
			line += fmt.Sprintf("\t(%d of %d rounds failed)", failed, len(r.runs))
		}
		fmt.Fprintln(tw, line)
	}
	tw.Flush()
}

// turnTransports sums up how the relayed rounds reached the TURN server,
// e.g. "udp/udp" or "udp/udp:2 tcp/udp:1"; "-" for unrelayed paths.
func turnTransports(ss []*benchSample) string {
	var order []string
	count := map[string]int{}
	for _, s := range ss {
		if s.turn == "" {
			continue
		}
		if count[s.turn] == 0 {
			order = append(order, s.turn)
		}
		count[s.turn]++
	}
	switch len(order) {
	case 0:
		return "-"
	case 1:
		return order[0]
	}
	parts := make([]string, len(order))
	for i, k := range order {
		parts[i] = fmt.Sprintf("%s:%d", k, count[k])
	}
	return strings.Join(parts, " ")
}

// ok are the rounds that measured.
func (r *benchRow) ok() []*benchSample {
	var ok []*benchSample
	for _, s := range r.runs {
		if s.err == nil {
			ok = append(ok, s)
		}
	}
	return ok
}

// ratios are TCP x1 over ref's TCP x1 in the same round and topology:
// side by side, so load drift between rounds cancels out.
func (r *benchRow) ratios(rows []*benchRow, ref benchPath) []float64 {
	var base *benchRow
	for _, o := range rows {
		if o.topo == r.topo && o.path == ref {
			base = o
		}
	}
	if base == nil {
		return nil
	}
	var out []float64
	for i, s := range r.runs {
		if i < len(base.runs) && s.err == nil && base.runs[i].err == nil && base.runs[i].res["tcp1"].Bps > 0 {
			out = append(out, s.res["tcp1"].Bps/base.runs[i].res["tcp1"].Bps)
		}
	}
	return out
}

func minMax(ss []*benchSample, f func(*benchSample) float64) (lo, hi float64) {
	for i, s := range ss {
		v := f(s)
		if i == 0 || v < lo {
			lo = v
		}
		if i == 0 || v > hi {
			hi = v
		}
	}
	return lo, hi
}
