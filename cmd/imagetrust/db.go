package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/imagetrust/imagetrust/scanner/vulndb"
)

func runDB(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return &exitError{code: 64, err: errors.New("usage: imagetrust db import FILE | imagetrust db status")}
	}
	fs := flag.NewFlagSet("db "+args[0], flag.ContinueOnError)
	dir := fs.String("db-dir", defaultDir("db"), "Grype vulnerability DB directory")
	output := fs.String("o", "table", "output format: table or json")
	maxAge := fs.Duration("db-max-age", 0, "report the DB as stale when older than this")
	ctx := context.Background()
	switch args[0] {
	case "import":
		file, rest := splitPositional(args[1:])
		if err := fs.Parse(rest); err != nil {
			return &exitError{code: 64, err: err}
		}
		if file == "" && fs.NArg() > 0 {
			file = fs.Arg(0)
		}
		if file == "" {
			return &exitError{code: 64, err: errors.New("usage: imagetrust db import FILE [--db-dir DIR]")}
		}
		m, err := vulndb.New(vulndb.Config{Dir: *dir, MaxAge: *maxAge, ValidateChecksum: true})
		if err != nil {
			return err
		}
		defer m.Close()
		changed, err := m.Import(ctx, file)
		if err != nil {
			return err
		}
		s := m.Status()
		if !changed {
			fmt.Fprintf(stdout, "already installed: schema %s built %s\n", s.SchemaVersion, s.Built.Format(time.RFC3339))
			return nil
		}
		fmt.Fprintf(stdout, "imported: schema %s built %s into %s\n", s.SchemaVersion, s.Built.Format(time.RFC3339), *dir)
		return nil
	case "status":
		if err := fs.Parse(args[1:]); err != nil {
			return &exitError{code: 64, err: err}
		}
		m, err := vulndb.New(vulndb.Config{Dir: *dir, MaxAge: *maxAge, ValidateChecksum: true})
		if err != nil {
			return err
		}
		defer m.Close()
		loadErr := m.Load(ctx)
		s := m.Status()
		if *output == "json" {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			if err := enc.Encode(map[string]any{
				"loaded": s.Loaded(), "schema": s.SchemaVersion, "built": s.Built, "ageSeconds": int64(s.Age.Seconds()),
				"stale": s.Stale, "checksum": s.Checksum, "source": s.Source, "error": s.Err,
			}); err != nil {
				return err
			}
		} else if s.Loaded() {
			fmt.Fprintf(stdout, "schema:   %s\nbuilt:    %s (%s ago)\nchecksum: %s\nsource:   %s\nstale:    %v\n",
				s.SchemaVersion, s.Built.Format(time.RFC3339), s.Age.Round(time.Minute), s.Checksum, s.Source, s.Stale)
		}
		if loadErr != nil {
			return loadErr
		}
		if s.Stale {
			return &exitError{code: 2, err: fmt.Errorf("vulnerability DB is older than %s", *maxAge)}
		}
		return nil
	default:
		fmt.Fprintln(os.Stderr, "usage: imagetrust db import FILE | imagetrust db status")
		return &exitError{code: 64, err: fmt.Errorf("unknown db command %q", args[0])}
	}
}
