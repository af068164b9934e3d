package scanner

import (
	"context"
	"errors"
	"sort"
	"sync"
	"time"

	"github.com/imagetrust/imagetrust/scanner/vulndb"
)

// FleetKey names one SBOM of the fleet: the image digest and the SBOM document's digest, so
// the two SBOMs a digest can have (attested in one repository, generated in another) never share
// a result.
type FleetKey struct {
	ImageDigest string
	SBOMDigest  string
}

func (k FleetKey) String() string { return k.ImageDigest + " " + k.SBOMDigest }

// KeyOf is the fleet key of an SBOM.
func KeyOf(doc *SBOM) FleetKey { return FleetKey{ImageDigest: doc.ImageDigest, SBOMDigest: doc.Digest} }

// Fleet matches the SBOMs of many images through the DB's fleet cache, each distinct package
// once, and after a DB change names the SBOMs whose findings changed, so only their consumers
// need to act. It is safe for concurrent use and holds no lock of its own while matching.
type Fleet struct {
	db  *vulndb.Manager
	now func() time.Time

	rematchMu sync.Mutex // one Rematch at a time: each compares the DB with the one before

	mu         sync.Mutex
	remembered map[FleetKey]bool // SBOMs the DB's fleet holds, as far as Match has seen
	at         string            // DB checksum the last Rematch brought the fleet to
}

// NewFleet returns a Fleet over db; now stamps ScannedAt (nil: time.Now).
func NewFleet(db *DB, now func() time.Time) *Fleet {
	if now == nil {
		now = time.Now
	}
	return &Fleet{db: db, now: now, remembered: map[FleetKey]bool{}}
}

// Match matches one SBOM and remembers it for Rematch. A document the fleet cannot take
// (invalid, too large, a matcher failure) is matched alone, so its result or error reads
// exactly as DB.Match's would.
func (f *Fleet) Match(ctx context.Context, doc *SBOM) (*Scan, error) {
	key := KeyOf(doc)
	res, err := f.db.MatchMany(ctx, map[string][]byte{key.String(): doc.Document})
	if r := res[key.String()]; r != nil {
		f.mu.Lock()
		f.remembered[key] = true
		if f.at == "" {
			f.at = r.DB.Checksum
		}
		f.mu.Unlock()
		return f.scanOf(r), nil
	}
	if err == nil {
		err = errors.New("vulndb: the fleet returned no result")
	}
	if ctx.Err() != nil || errors.Is(err, vulndb.ErrNoDB) || errors.Is(err, vulndb.ErrStale) {
		return nil, redactErr(err)
	}
	one, err := f.db.Match(ctx, doc.Document)
	if err != nil {
		return nil, redactErr(err)
	}
	return f.scanOf(one), nil
}

func (f *Fleet) scanOf(r *vulndb.MatchResult) *Scan { return newScan(r, f.now()) }

// FleetRematch is the outcome of one Rematch.
type FleetRematch struct {
	// RematchInfo is the DB's account of the rematch; zero when the DB had not moved.
	RematchInfo
	// Changed holds the new scan of every live SBOM whose findings changed — or of every live
	// SBOM the fleet holds when Refresh is set.
	Changed map[FleetKey]*Scan
	// Refresh is set when the DB offered no usable diff (a new schema or matcher model, an
	// unknown previous DB): every consumer should be refreshed, not only those whose findings
	// changed.
	Refresh bool
	// Unknown are live SBOMs the fleet does not hold (never matched through it, or their last
	// match failed): the caller matches them one by one.
	Unknown []FleetKey
}

// Rematch brings the SBOMs in live up to date with the active DB: only those the DB diff
// touched (all false), or every one (all true: the periodic safety net). SBOMs not in live
// leave the fleet, so it stops rematching images nobody wants.
func (f *Fleet) Rematch(ctx context.Context, all bool, live []FleetKey) (FleetRematch, error) {
	f.rematchMu.Lock()
	defer f.rematchMu.Unlock()
	out := FleetRematch{Changed: map[FleetKey]*Scan{}}
	f.forgetExcept(live)

	var changed map[string]*vulndb.MatchResult
	var err error
	if all {
		changed, err = f.db.RematchAll(ctx)
	} else {
		changed, err = f.db.RematchChanged(ctx)
	}
	if err != nil {
		return out, redactErr(err)
	}
	st := f.db.FleetStats()
	f.mu.Lock()
	moved := f.at != "" && f.at != st.DBChecksum
	f.at = st.DBChecksum
	var known []FleetKey
	for _, k := range live {
		if f.remembered[k] {
			known = append(known, k)
		} else {
			out.Unknown = append(out.Unknown, k)
		}
	}
	f.mu.Unlock()
	if all || moved {
		out.RematchInfo = st.LastRematch
	}
	out.Refresh = moved && !all && st.LastRematch.Full
	if out.Refresh {
		keys := make([]string, len(known))
		for i, k := range known {
			keys[i] = k.String()
		}
		changed = f.db.Results(keys...)
	}
	for _, k := range known {
		if r := changed[k.String()]; r != nil {
			out.Changed[k] = f.scanOf(r)
		} else if out.Refresh {
			out.Unknown = append(out.Unknown, k)
		}
	}
	sort.Slice(out.Unknown, func(i, j int) bool { return out.Unknown[i].String() < out.Unknown[j].String() })
	return out, nil
}

// forgetExcept drops every remembered SBOM not in live from the fleet.
func (f *Fleet) forgetExcept(live []FleetKey) {
	keep := make(map[FleetKey]bool, len(live))
	for _, k := range live {
		keep[k] = true
	}
	f.mu.Lock()
	var gone []string
	for k := range f.remembered {
		if !keep[k] {
			gone = append(gone, k.String())
			delete(f.remembered, k)
		}
	}
	f.mu.Unlock()
	f.db.Forget(gone...)
}
