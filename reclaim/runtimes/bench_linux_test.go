package runtimes

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"text/tabwriter"
)

var allRuntimes = []runtime{nodeRuntime, goRuntime, pythonRuntime, pythonIgnoringEOF, libuvRuntime, glibRuntime, perlRuntime}

// BenchmarkRuntimes measures every runtime under every policy variant once
// per iteration and prints the table of issue 9: did it abort, CPU used
// after the release, exceptions, and the time from the release to the
// program's own close. reclaim/bench/runtimes.sh runs it.
func BenchmarkRuntimes(b *testing.B) {
	var rows []*outcome
	for _, rt := range allRuntimes {
		for _, v := range variants {
			b.Run(rt.Name+"/"+v.Name, func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					o := runScenario(b, rt, v)
					rows = append(rows, o)
					b.ReportMetric(float64(o.CPUAfter+o.CPUExercise)/ticksPerSecond, "cpu-s")
					b.ReportMetric(float64(o.Exceptions), "exceptions")
					b.ReportMetric(float64(o.OwnClose.Milliseconds()), "ms-to-own-close")
				}
			})
		}
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "RUNTIME\tPOLICY\tDONE\tABORT\tEXIT\tCPU-S AFTER\tEXCEPTIONS\tDATA LOST\tOWN CLOSES\tRELEASE->OWN CLOSE (FIRST/LAST)\tPROBLEMS")
	for _, o := range rows {
		var methods []string
		for _, m := range sortedKeys(o.Methods) {
			methods = append(methods, fmt.Sprintf("%s:%d", m, o.Methods[m]))
		}
		if len(methods) == 0 {
			methods = []string{"none"}
		}
		abort := "no"
		if o.Exit == 134 || o.Exit == 139 || (o.Exit != o.ExitWant && o.Exit > 128) {
			abort = fmt.Sprintf("yes (%d)", o.Exit)
		}
		own := "-"
		if o.OwnClosed > 0 {
			own = fmt.Sprintf("%.0f/%.0f ms", float64(o.OwnCloseFirst.Microseconds())/1000, float64(o.OwnClose.Microseconds())/1000)
		}
		first := ""
		if len(o.Problems) > 0 {
			first = o.Problems[0]
			if len(first) > 90 {
				first = first[:90]
			}
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%.2f/%.2f\t%d\t%d\t%d\t%s\t%d %s\n", o.Runtime, o.Variant, strings.Join(methods, ","),
			abort, o.Exit, float64(o.CPUAfter)/ticksPerSecond, float64(o.CPUExercise)/ticksPerSecond, o.Exceptions, o.DataLost, o.OwnClosed, own, len(o.Problems), first)
	}
	w.Flush()
}
