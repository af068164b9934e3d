// Command imagetrust is both the operator's manager (`imagetrust manager`) and a one-shot
// scanner for CI jobs and laptops (`imagetrust scan IMAGE`, `imagetrust db import|status`).
// Both run the same scanner library.
package main

import (
	"errors"
	"fmt"
	"os"
)

const usage = `imagetrust: continuous container-image trust

Usage:
  imagetrust scan IMAGE [flags]      verify, SBOM, scan and evaluate one image (exit 2 if Untrusted)
  imagetrust db import FILE [flags]  import a Grype DB archive (air-gapped)
  imagetrust db status [flags]       show the installed vulnerability DB
  imagetrust manager [flags]         run the Kubernetes operator

Run "imagetrust COMMAND -h" for a command's flags.
`

// exitError carries an exit status other than 1.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }

func main() {
	if err := run(os.Args[1:]); err != nil {
		var ee *exitError
		if errors.As(err, &ee) {
			if ee.err != nil && ee.err.Error() != "" {
				fmt.Fprintln(os.Stderr, "imagetrust:", ee.err)
			}
			os.Exit(ee.code)
		}
		fmt.Fprintln(os.Stderr, "imagetrust:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return &exitError{code: 64, err: errors.New("")}
	}
	switch args[0] {
	case "scan":
		return runScan(args[1:], os.Stdout)
	case "db":
		return runDB(args[1:], os.Stdout)
	case "manager":
		return runManager(args[1:])
	case "-h", "--help", "help":
		fmt.Print(usage)
		return nil
	default:
		fmt.Fprint(os.Stderr, usage)
		return &exitError{code: 64, err: fmt.Errorf("unknown command %q", args[0])}
	}
}
