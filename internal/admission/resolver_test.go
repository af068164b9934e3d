package admission

import (
	"context"

	"github.com/imagetrust/imagetrust/scanner"
)

// scannerResolver resolves tags anonymously through the scanner's registry client: the worlds'
// registries are public. Pull secrets are the controllers' resolver's business (tested there).
type scannerResolver struct{ sc *scanner.Scanner }

func newScannerResolver(insecureHost string) *scannerResolver {
	sc, err := scanner.New(scanner.Config{Registry: scanner.NewRegistryClient(scanner.RegistryOptions{Insecure: []string{insecureHost}})})
	if err != nil {
		panic(err)
	}
	return &scannerResolver{sc: sc}
}

func (r *scannerResolver) Resolve(ctx context.Context, _, image string, _ []string) (string, error) {
	return r.sc.Digest(ctx, image)
}
