package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// exitUsage is the exit status of a command line that cannot be run as written (sysexits'
// EX_USAGE): an unknown flag, a missing value, too many or too few arguments.
const exitUsage = 64

// usageError is a command line mistake: exit status 64 and a hint to the command's help.
func usageError(cmd, format string, args ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf("%s: %s", cmd, fmt.Sprintf(format, args...)),
		hint: fmt.Sprintf("Run 'imagetrust %s --help' for usage.", cmd)}
}

// parsed is a command line split into what the flags did and the positional arguments.
type parsed struct {
	positional []string
	help       bool
}

// parseArgs sets fs's flags from args wherever they stand, before, between or after positional
// arguments, the way cosign's and grype's users write them. It accepts -flag and --flag, with
// the value as "=value" or as the next argument (boolean flags take only "=value"); "--" ends
// the flags, and "-" alone is a positional argument. -h and --help are noted, not errors.
//
// Go's flag.Parse stops at the first positional argument, silently leaving every later flag
// unparsed: for a CI gate that drops --fail-on after the image, that is a gate that passes.
func parseArgs(fs *flag.FlagSet, args []string) (parsed, error) {
	var p parsed
	for i := 0; i < len(args); i++ {
		arg := args[i]
		if arg == "--" {
			p.positional = append(p.positional, args[i+1:]...)
			break
		}
		if len(arg) < 2 || arg[0] != '-' {
			p.positional = append(p.positional, arg)
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimPrefix(arg[1:], "-"), "=")
		if name == "h" || name == "help" {
			p.help = true
			continue
		}
		f := fs.Lookup(name)
		if f == nil || name == "" || strings.HasPrefix(name, "-") {
			return p, fmt.Errorf("unknown flag %s", dashed(name))
		}
		if !hasValue {
			if isBool(f) {
				value = "true"
			} else if i+1 < len(args) {
				i++
				value = args[i]
			} else {
				return p, fmt.Errorf("flag %s needs a value", dashed(name))
			}
		}
		if err := fs.Set(name, value); err != nil {
			return p, fmt.Errorf("invalid value %q for flag %s: %v", value, dashed(name), err)
		}
	}
	return p, nil
}

func isBool(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// dashed writes a flag name the way the help text does: -o, --fail-on.
func dashed(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

// commandLine describes one command for parsing and for its help text.
type commandLine struct {
	// name is the command as typed after "imagetrust", e.g. "scan" or "db import".
	name string
	// synopsis names the positional arguments, e.g. "IMAGE".
	synopsis string
	// about is printed between the usage line and the flags.
	about string
	// args is the number of positional arguments the command takes.
	args int
}

// parse parses args for the command. When help was asked for it prints the help to stdout and
// returns errHelp; a command line that cannot run is a usage error (exit 64).
func (c commandLine) parse(fs *flag.FlagSet, args []string, stdout io.Writer) ([]string, error) {
	p, err := parseArgs(fs, args)
	if p.help {
		c.printHelp(stdout, fs)
		return nil, errHelp
	}
	if err != nil {
		return nil, usageError(c.name, "%v", err)
	}
	if got := len(p.positional); got != c.args {
		return nil, c.countError(p.positional)
	}
	return p.positional, nil
}

func (c commandLine) countError(positional []string) error {
	want := strings.Fields(c.synopsis)
	switch {
	case len(positional) < len(want):
		return usageError(c.name, "missing %s", strings.Join(want[len(positional):], " "))
	case len(want) == 0:
		return usageError(c.name, "takes no arguments, got %q", positional)
	default:
		return usageError(c.name, "takes %d argument(s) (%s), got %d: unexpected %q (flags go before or after them; a value with spaces needs quotes)",
			len(want), c.synopsis, len(positional), positional[len(want):])
	}
}

// errHelp is returned after help was printed: exit status 0.
var errHelp = errors.New("help printed")

// printHelp writes the usage line, the description and every flag with its default.
func (c commandLine) printHelp(w io.Writer, fs *flag.FlagSet) {
	usage := "imagetrust " + c.name
	if c.synopsis != "" {
		usage += " " + c.synopsis
	}
	fmt.Fprintf(w, "Usage: %s [flags]\n", usage)
	if c.about != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimSpace(c.about))
	}
	fmt.Fprint(w, "\nFlags (before or after the arguments; -- ends the flags):\n")
	printFlags(w, fs)
	fmt.Fprintf(w, "  -h, --help\n        show this help\n")
}

func printFlags(w io.Writer, fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		typ, usage := flag.UnquoteUsage(f)
		line := "  " + dashed(f.Name)
		if typ != "" && !isBool(f) {
			line += " " + typ
		}
		fmt.Fprintf(w, "%s\n        %s", line, strings.ReplaceAll(usage, "\n", "\n        "))
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "[]" && f.DefValue != "0s" {
			fmt.Fprintf(w, " (default %s)", f.DefValue)
		}
		fmt.Fprintln(w)
	})
}
