//go:build !race

package examples_test

const raceBuild = false
