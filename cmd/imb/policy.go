package main

import (
	"fmt"
	"io"
)

// runPolicy is a placeholder until the policy command is built.
func runPolicy(_ []string, _, stderr io.Writer) int {
	fmt.Fprintln(stderr, "imb policy: not built yet")
	return 1
}
