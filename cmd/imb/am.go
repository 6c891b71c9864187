package main

import (
	"fmt"
	"io"
)

// runAM is a placeholder until the am command is built.
func runAM(_ []string, _, stderr io.Writer) int {
	fmt.Fprintln(stderr, "imb am: not built yet")
	return 1
}
