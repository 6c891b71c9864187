package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"imb/broker"
)

// cmdFlags is a command's flag set with the conventions every imb command
// shares: --help prints to stdout and exits 0; a usage error prints the message
// and the help to stderr and exits 2; the help writes flags as --flag, the way
// the docs do.
type cmdFlags struct {
	*flag.FlagSet
	out      bytes.Buffer
	synopsis string
	about    string
}

// newFlags makes the flag set of a command; synopsis is its usage line, about a
// sentence on what it does.
func newFlags(name, synopsis, about string) *cmdFlags {
	f := &cmdFlags{FlagSet: flag.NewFlagSet(name, flag.ContinueOnError), synopsis: synopsis, about: about}
	f.SetOutput(&f.out)
	f.Usage = func() { f.printHelp(&f.out) }
	return f
}

// printHelp writes the usage line, the description and every flag.
func (f *cmdFlags) printHelp(w io.Writer) {
	fmt.Fprintf(w, "usage: %s\n", f.synopsis)
	if f.about != "" {
		fmt.Fprintf(w, "\n%s\n", f.about)
	}
	first := true
	f.VisitAll(func(fl *flag.Flag) {
		if first {
			fmt.Fprintln(w, "\nflags:")
			first = false
		}
		name, use := flag.UnquoteUsage(fl)
		line := "  --" + fl.Name
		if len(fl.Name) == 1 {
			line = "  -" + fl.Name
		}
		if name != "" {
			line += " " + name
		}
		line += "\n    \t" + strings.ReplaceAll(use, "\n", "\n    \t")
		if fl.DefValue != "" && fl.DefValue != "false" && fl.DefValue != "[]" && fl.DefValue != "0" {
			line += fmt.Sprintf(" (default %q)", fl.DefValue)
		}
		fmt.Fprintln(w, line)
	})
}

// parse parses args. It returns -1 when the command should go on, else the exit
// code: 0 after --help, 2 after a usage error. maxArgs bounds the positional
// arguments (-1: any number).
func (f *cmdFlags) parse(args []string, maxArgs int, stdout, stderr io.Writer) int {
	err := f.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		_, _ = stdout.Write(f.out.Bytes())
		return exitOK
	}
	if err == nil && maxArgs >= 0 && f.NArg() > maxArgs {
		err = fmt.Errorf("unexpected argument %q", f.Arg(maxArgs))
		fmt.Fprintf(&f.out, "%s: %v\n", f.Name(), err)
	}
	if err != nil {
		// The flag package has written the message and the help into f.out.
		fmt.Fprintf(stderr, "%s\n", strings.TrimRight(f.out.String(), "\n"))
		return exitUsage
	}
	return -1
}

// given reports which flags the command line set.
func (f *cmdFlags) given() map[string]bool {
	set := map[string]bool{}
	f.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	return set
}

// logFlags are the logging flags every long-running command has.
type logFlags struct {
	format, level string
	verbose       bool
}

func addLogFlags(fs *flag.FlagSet, level string) *logFlags {
	l := &logFlags{}
	fs.StringVar(&l.format, "log-format", "text", "log format: json or text")
	fs.StringVar(&l.level, "log-level", level, "log level: debug, info, warn or error")
	fs.BoolVar(&l.verbose, "v", false, "verbose: the same as --log-level debug")
	return l
}

// logger builds the process logger from the flags.
func (l *logFlags) logger(w io.Writer) (*slog.Logger, error) {
	level := l.level
	if l.verbose {
		level = "debug"
	}
	return newLogger(w, l.format, level)
}

// startFailure prints why a server did not start and returns the exit code: 2
// for a configuration error (an address in use named by its flag, first), 1 for
// a failure at run time. flagOf maps an imb.yaml listener key to the flag that
// sets it.
func startFailure(stderr io.Writer, prefix string, err error, flagOf func(key string) string) int {
	var le *broker.ListenError
	if errors.As(err, &le) {
		fmt.Fprintf(stderr, "%s: `%s %s`: %s\n", prefix, flagOf(le.Key), le.Addr, le.Reason())
		return exitUsage
	}
	fmt.Fprintf(stderr, "%s: %v\n", prefix, err)
	if broker.IsConfigError(err) {
		return exitUsage
	}
	return exitRuntime
}

// serveFlagOf is the imb serve (and imb dev) flag of an imb.yaml key.
func serveFlagOf(key string) string { return "--" + strings.ReplaceAll(key, "_", "-") }
