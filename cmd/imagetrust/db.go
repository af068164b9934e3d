package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/imagetrust/imagetrust/scanner/vulndb"
)

var (
	dbCommand = commandLine{name: "db", synopsis: "import FILE | status", about: `Manage the Grype vulnerability DB the scan command reads:
  import FILE  install a Grype DB archive (.tar.gz, .tar.zst, .tar.xz) or vulnerability.db, air-gapped
  status       show the installed DB; exit status 2 when it is older than --db-max-age`}
	dbImportCommand = commandLine{name: "db import", synopsis: "FILE", args: 1,
		about: "Install a Grype DB archive (.tar.gz, .tar.zst, .tar.xz) or vulnerability.db into --db-dir, as `grype db import` does."}
	dbStatusCommand = commandLine{name: "db status",
		about: "Show the installed vulnerability DB. Exit status: 0 loaded, 1 none or invalid, 2 older than --db-max-age."}
)

// runDB is `imagetrust db import|status`: the flags are shared and may stand anywhere, even
// before the subcommand.
func runDB(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("db", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	dir := fs.String("db-dir", defaultDir("db"), "Grype vulnerability DB directory")
	output := fs.String("o", "table", "output format (status): table or json")
	maxAge := fs.Duration("db-max-age", 0, "report the DB as stale when older than this")
	p, err := parseArgs(fs, args)
	sub := dbCommand
	if len(p.positional) > 0 {
		switch p.positional[0] {
		case "import":
			sub = dbImportCommand
		case "status":
			sub = dbStatusCommand
		default:
			return usageError("db", "unknown subcommand %q: want import or status", p.positional[0])
		}
	}
	switch {
	case p.help:
		sub.printHelp(stdout, fs)
		return errHelp
	case err != nil:
		return usageError(sub.name, "%v", err)
	case sub.name == "db":
		return usageError("db", "missing subcommand: import or status")
	case len(p.positional)-1 != sub.args:
		return sub.countError(p.positional[1:])
	case *output != "table" && *output != "json":
		return usageError(sub.name, "-o %q: want table or json", *output)
	}
	cfg := vulndb.Config{Dir: *dir, MaxAge: *maxAge, ValidateChecksum: true}
	if sub.name == "db import" {
		return dbImport(cfg, p.positional[1], stdout)
	}
	return dbStatus(cfg, *output == "json", stdout)
}

func dbImport(cfg vulndb.Config, file string, stdout io.Writer) error {
	m, err := vulndb.New(cfg)
	if err != nil {
		return err
	}
	defer m.Close()
	// what is installed already, so importing the same archive again is a no-op
	_ = m.Load(context.Background())
	changed, err := m.Import(context.Background(), file)
	if err != nil {
		return err
	}
	s := m.Status()
	if !changed {
		fmt.Fprintf(stdout, "already installed: schema %s built %s\n", s.SchemaVersion, s.Built.Format(time.RFC3339))
		return nil
	}
	fmt.Fprintf(stdout, "imported: schema %s built %s into %s\n", s.SchemaVersion, s.Built.Format(time.RFC3339), cfg.Dir)
	return nil
}

func dbStatus(cfg vulndb.Config, asJSON bool, stdout io.Writer) error {
	m, err := vulndb.New(cfg)
	if err != nil {
		return err
	}
	defer m.Close()
	loadErr := m.Load(context.Background())
	s := m.Status()
	if asJSON {
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
		return &exitError{code: 2, err: fmt.Errorf("vulnerability DB is older than %s", cfg.MaxAge)}
	}
	return nil
}
