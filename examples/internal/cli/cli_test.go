package cli

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		args []string
		want error
	}{
		{nil, nil},
		{[]string{"-name", "x"}, nil},
		{[]string{"-help"}, flag.ErrHelp},
		{[]string{"-bogus"}, ErrUsage},
		{[]string{"-name", "x", "stray"}, ErrUsage},
	}
	for _, tt := range tests {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.String("name", "", "")
		var stderr bytes.Buffer
		err := Parse(fs, tt.args, &stderr)
		if !errors.Is(err, tt.want) && !(err == nil && tt.want == nil) {
			t.Errorf("Parse(%q) = %v, want %v", tt.args, err, tt.want)
		}
		if tt.want != nil && stderr.Len() == 0 {
			t.Errorf("Parse(%q) said nothing on stderr", tt.args)
		}
	}
}

func TestStep(t *testing.T) {
	var out bytes.Buffer
	if err := Step(&out, "Creating Thing a", func() error { return nil }); err != nil || out.String() != "Creating Thing a... Done\n" {
		t.Fatalf("%v %q", err, out.String())
	}
	out.Reset()
	err := Step(&out, "Requesting access token", func() error { return io.ErrUnexpectedEOF })
	if !errors.Is(err, io.ErrUnexpectedEOF) || err.Error() != "Requesting access token: unexpected EOF" || out.String() != "Requesting access token... Failed\n" {
		t.Fatalf("%v %q", err, out.String())
	}
}
