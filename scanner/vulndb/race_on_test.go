//go:build race

package vulndb

// raceEnabled scales heavy tests down under the race detector, which slows grype ~10x.
const raceEnabled = true
