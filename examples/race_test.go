//go:build race

package examples_test

// raceBuild makes the example binaries of the end-to-end test race-checked like the test itself.
const raceBuild = true
