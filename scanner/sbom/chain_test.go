package sbom

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
)

// staticSource answers every Fetch with the same result and counts calls.
type staticSource struct {
	name  string
	sbom  *SBOM
	err   error
	calls int
}

func (s *staticSource) Name() string { return s.name }

func (s *staticSource) Fetch(_ context.Context, _ name.Digest) (*SBOM, error) {
	s.calls++
	if s.sbom != nil {
		cp := *s.sbom
		return &cp, nil
	}
	return nil, s.err
}

func testDigest(t testing.TB, hexByte string) name.Digest {
	t.Helper()
	d, err := name.NewDigest("registry.example/app@sha256:" + strings.Repeat(hexByte, 32))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func sbomFor(img name.Digest, source string) *SBOM {
	doc := spdxDoc(1)
	return &SBOM{Source: source, Format: FormatSPDXJSON, Document: doc, Packages: 1, Digest: DocumentDigest(doc),
		ImageDigest: img.DigestStr(), CreatedAt: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func TestChainOrder(t *testing.T) {
	img := testDigest(t, "aa")
	att := &staticSource{name: "attestation", err: ErrNotFound}
	ref := &staticSource{name: "referrer", sbom: sbomFor(img, SourceReferrer)}
	gen := &staticSource{name: "generate", sbom: sbomFor(img, SourceGenerated)}

	s, err := Chain{Sources: []Source{att, ref, gen}}.Fetch(context.Background(), img)
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	if s.Source != SourceReferrer {
		t.Errorf("Source = %q, want the first success (Referrer)", s.Source)
	}
	if att.calls != 1 || ref.calls != 1 || gen.calls != 0 {
		t.Errorf("calls attestation/referrer/generate = %d/%d/%d, want 1/1/0", att.calls, ref.calls, gen.calls)
	}
	if want := "earlier sources: attestation: no SBOM found"; s.Note != want {
		t.Errorf("Note = %q, want %q", s.Note, want)
	}
}

func TestChainCombinedReason(t *testing.T) {
	img := testDigest(t, "bb")
	rejected := &RejectedError{Rejections: []Rejection{{Digest: "sha256:" + strings.Repeat("cd", 32), Reason: "untrusted: no signatures found"}}}
	tests := []struct {
		name         string
		sources      []Source
		want         string
		wantNotFound bool
	}{
		{
			name: "a hard failure among not-founds",
			sources: []Source{
				&staticSource{name: "attestation", err: ErrNotFound},
				&staticSource{name: "referrer", err: rejected},
				&staticSource{name: "generate", err: errors.New(`pulling image: Get "https://u:p@r.example/v2/?token=abc": dial tcp: connection refused`)},
			},
			want: "attestation: no SBOM found; referrer: no acceptable referrer SBOM: referrer SBOM sha256:" + strings.Repeat("cd", 32) +
				` rejected: untrusted: no signatures found; generate: pulling image: Get "https://r.example/v2/": dial tcp: connection refused`,
			wantNotFound: false,
		},
		{
			name: "nothing anywhere",
			sources: []Source{
				&staticSource{name: "attestation", err: ErrNotFound},
				&staticSource{name: "referrer", err: rejected},
			},
			want:         "attestation: no SBOM found; referrer: no acceptable referrer SBOM: referrer SBOM sha256:" + strings.Repeat("cd", 32) + " rejected: untrusted: no signatures found",
			wantNotFound: true,
		},
		{
			name: "wrong image digest is a failure",
			sources: []Source{
				&staticSource{name: "referrer", sbom: sbomFor(testDigest(t, "ee"), SourceReferrer)},
			},
			want:         "referrer: source returned an SBOM for sha256:" + strings.Repeat("ee", 32) + ", not sha256:" + strings.Repeat("bb", 32),
			wantNotFound: false,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Chain{Sources: tc.sources}.Fetch(context.Background(), img)
			if err == nil {
				t.Fatalf("Fetch returned %+v, want an error", s)
			}
			if err.Error() != tc.want {
				t.Errorf("error:\n got %q\nwant %q", err, tc.want)
			}
			if got := errors.Is(err, ErrNotFound); got != tc.wantNotFound {
				t.Errorf("errors.Is(err, ErrNotFound) = %v, want %v", got, tc.wantNotFound)
			}
			var ce *ChainError
			if !errors.As(err, &ce) || len(ce.Attempts) != len(tc.sources) {
				t.Errorf("error is not a ChainError with %d attempts", len(tc.sources))
			}
		})
	}
}

func TestChainStopsOnCancel(t *testing.T) {
	img := testDigest(t, "aa")
	ctx, cancel := context.WithCancel(context.Background())
	first := &cancelSource{cancel: cancel}
	second := &staticSource{name: "generate", sbom: sbomFor(img, SourceGenerated)}
	_, err := Chain{Sources: []Source{first, second}}.Fetch(ctx, img)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if second.calls != 0 {
		t.Errorf("a source was called after cancellation")
	}
}

type cancelSource struct{ cancel context.CancelFunc }

func (c *cancelSource) Name() string { return "referrer" }
func (c *cancelSource) Fetch(ctx context.Context, _ name.Digest) (*SBOM, error) {
	c.cancel()
	return nil, ctx.Err()
}

func TestChainEmpty(t *testing.T) {
	_, err := Chain{}.Fetch(context.Background(), testDigest(t, "aa"))
	if err == nil || errors.Is(err, ErrNotFound) || err.Error() != "sbom chain: no SBOM sources configured" {
		t.Fatalf("err = %v, want a configuration error", err)
	}
}

// TestChainReferrerThenGenerate runs the real sources: the only referrer SBOM is untrusted, so
// the chain generates one and says why.
func TestChainReferrerThenGenerate(t *testing.T) {
	host := testRegistry(t, nil)
	img := pushImage(t, host, "debian", debianLayer(t))
	art := attachSBOM(t, img, MediaTypeSPDXJSON, MediaTypeSPDXJSON, spdxDoc(9), nil)
	tr := &trustRecorder{trusted: map[string]bool{}}

	s, err := Chain{Sources: []Source{&ReferrerSource{Trust: tr.trust}, &Generator{}}}.Fetch(context.Background(), img)
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	if s.Source != SourceGenerated || s.Packages != 3 {
		t.Errorf("got %s with %d packages, want Generated with 3", s.Source, s.Packages)
	}
	want := "earlier sources: referrer: no acceptable referrer SBOM: referrer SBOM " + art.DigestStr() +
		" rejected: untrusted: no matching signatures: no signature found for " + art.DigestStr()
	if !strings.HasSuffix(s.Note, want) {
		t.Errorf("Note = %q, want it to end with %q", s.Note, want)
	}
}
