package main

import (
	"fmt"
	"io"
)

// runServe is a placeholder until the serve command is built.
func runServe(_ []string, _, stderr io.Writer) int {
	fmt.Fprintln(stderr, "imb serve: not built yet")
	return 1
}
