// Command graylanectl controls a Graylane cluster. Until the cluster API
// exists it only prints its version.
package main

import (
	"fmt"
	"os"

	"github.com/graylane/graylane/pkg/version"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] != "version" && os.Args[1] != "--version" {
		fmt.Fprintf(os.Stderr, "graylanectl: %q: no commands yet; this version only prints its version\n", os.Args[1])
		os.Exit(2)
	}
	fmt.Println("graylanectl", version.Version)
}
