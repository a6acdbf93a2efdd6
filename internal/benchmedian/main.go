// Command benchmedian reads `go test -bench` output of several runs (for
// example -count 5) on standard input and prints, for each benchmark, the
// median of every metric over its runs, with the number of runs. It is how
// BENCHMARKS.md's figures are computed:
//
//	go test -run '^$' -bench . -count 5 . | go run ./internal/benchmedian
package main

import (
	"bufio"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
)

func main() {
	type bench struct {
		name    string
		units   []string
		metrics map[string][]float64
	}
	var order []*bench
	byName := map[string]*bench{}
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		if _, err := strconv.Atoi(f[1]); err != nil {
			continue // not a result line
		}
		bn := byName[f[0]]
		if bn == nil {
			bn = &bench{name: f[0], metrics: map[string][]float64{}}
			byName[f[0]] = bn
			order = append(order, bn)
		}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			u := f[i+1]
			if _, ok := bn.metrics[u]; !ok {
				bn.units = append(bn.units, u)
			}
			bn.metrics[u] = append(bn.metrics[u], v)
		}
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintln(os.Stderr, "benchmedian:", err)
		os.Exit(1)
	}
	for _, bn := range order {
		var b strings.Builder
		runs := 0
		for _, u := range bn.units {
			vs := bn.metrics[u]
			runs = max(runs, len(vs))
			if u == "ns/op" && slices.Max(vs) == 0 {
				continue // benchAB reports its own times
			}
			fmt.Fprintf(&b, "\t%s %s", format(median(vs)), u)
		}
		fmt.Printf("%s\truns=%d%s\n", bn.name, runs, b.String())
	}
}

func median(vs []float64) float64 {
	s := slices.Clone(vs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func format(v float64) string {
	if v >= 100 {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}
