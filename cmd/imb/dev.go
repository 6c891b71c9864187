package main

import (
	"fmt"
	"io"
)

// runDev is a placeholder until the dev command is built.
func runDev(_ []string, _, stderr io.Writer) int {
	fmt.Fprintln(stderr, "imb dev: not built yet")
	return 1
}
