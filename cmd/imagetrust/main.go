// Command imagetrust is both the operator's manager (`imagetrust manager`) and a one-shot
// scanner for CI jobs and laptops (`imagetrust scan IMAGE`, `imagetrust db import|status`).
// Both run the same scanner library.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
)

const usage = `imagetrust: continuous container-image trust

Usage:
  imagetrust scan IMAGE [flags]      verify, SBOM, scan and evaluate one image (exit 2 Untrusted, 3 Unknown)
  imagetrust db import FILE [flags]  import a Grype DB archive (air-gapped)
  imagetrust db status [flags]       show the installed vulnerability DB
  imagetrust manager [flags]         run the Kubernetes operator
  imagetrust version [flags]         show the versions of imagetrust, grype, syft and cosign
  imagetrust help [COMMAND]          show a command's help (same as COMMAND --help)

Flags go before or after a command's arguments. Exit status: 0 success, 1 error,
2 Untrusted (scan) or stale DB (db status), 3 Unknown under a gate (scan), 64 usage error.
`

// exitError carries an exit status other than 1, and for usage errors a hint printed after
// the message.
type exitError struct {
	code int
	err  error
	hint string
}

func (e *exitError) Error() string { return e.err.Error() }

func (e *exitError) Unwrap() error { return e.err }

func main() {
	os.Exit(exitCode(run(os.Args[1:], os.Stdout), os.Stderr))
}

// exitCode turns run's error into the process exit status, printing the message to stderr.
func exitCode(err error, stderr io.Writer) int {
	var ee *exitError
	switch {
	case err == nil || errors.Is(err, errHelp):
		return 0
	case errors.As(err, &ee):
		if ee.err != nil && ee.err.Error() != "" {
			fmt.Fprintln(stderr, "imagetrust:", ee.err)
		}
		if ee.hint != "" {
			fmt.Fprintln(stderr, ee.hint)
		}
		return ee.code
	default:
		fmt.Fprintln(stderr, "imagetrust:", err)
		return 1
	}
}

// run dispatches a command line; help goes to stdout, everything else a command prints is its
// output.
func run(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return &exitError{code: exitUsage, err: errors.New("a command is needed"), hint: usage}
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "scan":
		return runScan(rest, stdout)
	case "db":
		return runDB(rest, stdout)
	case "manager":
		return runManager(rest, stdout)
	case "version":
		return runVersion(rest, stdout)
	case "help":
		return runHelp(rest, stdout)
	case "-h", "--help", "-help":
		return runHelp(rest, stdout)
	default:
		return &exitError{code: exitUsage, err: fmt.Errorf("unknown command %q", cmd), hint: usage}
	}
}

// runHelp is `imagetrust help [COMMAND [SUBCOMMAND]]`: the command's own --help.
func runHelp(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stdout, usage)
		return nil
	}
	switch args[0] {
	case "scan", "db", "manager", "version":
		if args[0] != "db" && len(args) > 1 {
			return &exitError{code: exitUsage, err: fmt.Errorf("help: %s has no subcommand %q", args[0], args[1])}
		}
		return run(append(append([]string{}, args...), "--help"), stdout)
	default:
		return &exitError{code: exitUsage, err: fmt.Errorf("help: unknown command %q", args[0]), hint: usage}
	}
}
