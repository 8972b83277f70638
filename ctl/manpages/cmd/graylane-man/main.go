// Command graylane-man writes graylanectl's man pages into a directory:
// `make man` and `make install` run it.
package main

import (
	"fmt"
	"os"
	"time"

	"github.com/graylane/graylane/ctl/manpages"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: graylane-man DIR")
		os.Exit(2)
	}
	// The pages carry a fixed date: the same tree builds the same pages.
	if err := manpages.Write(os.Args[1], time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
