// Command genbounds writes bpf/include/hist_bounds.h: the latency histogram
// bucket bounds the data path compares durations against (see package
// histogram). go generate in bpf/ runs it.
package main

import (
	"fmt"
	"os"

	"github.com/graylane/graylane/pkg/histogram"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: genbounds OUTPUT.h")
		os.Exit(2)
	}
	if err := os.WriteFile(os.Args[1], []byte(histogram.CHeader()), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "genbounds:", err)
		os.Exit(1)
	}
}
