package authz

import (
	"fmt"
	"strings"
)

// PositionError is one problem in a policy file, located by 1-based line and
// column.
type PositionError struct {
	File      string
	Line, Col int
	Msg       string
}

// Error returns "FILE:LINE:COL: MSG".
func (e *PositionError) Error() string {
	return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Col, e.Msg)
}

// ErrorList is every problem found in a policy file, in file order.
type ErrorList []*PositionError

// Error returns one "FILE:LINE:COL: MSG" line per problem.
func (l ErrorList) Error() string {
	var b strings.Builder
	for i, e := range l {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}
