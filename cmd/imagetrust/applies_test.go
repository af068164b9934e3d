package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imagetrust/imagetrust/internal/policyconv/appliestable"
	"github.com/imagetrust/imagetrust/scanner"
	"github.com/imagetrust/imagetrust/scanner/registry"
)

// TestAppliesTable runs the shared table through `imagetrust scan --policy`'s path: the policy
// file read as the CLI reads it, the image named as Resolve names it, and the CLI's selection
// of the policies that gate it. The manager and admission run the same table.
func TestAppliesTable(t *testing.T) {
	dir := t.TempDir()
	for i, tc := range appliestable.Cases {
		file := filepath.Join(dir, fmt.Sprintf("policy-%d.yaml", i))
		doc := "apiVersion: security.imagetrust.dev/v1alpha1\nkind: ImageTrustPolicy\nmetadata:\n  name: table\nspec:\n  images: [" +
			`"` + strings.Join(tc.Images, `", "`) + `"` + "]\n"
		if err := os.WriteFile(file, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		pols, err := policiesFromFiles(context.Background(), file, nil)
		if err != nil {
			t.Fatalf("%v: %v", tc.Images, err)
		}
		repo, tag, err := registry.ParseImage(tc.Image)
		if err != nil {
			t.Fatalf("%s: %v", tc.Image, err)
		}
		img := scanner.Image{Repository: repo, Tag: tag, Digest: appliestable.Digest}
		if got := len(applicable(pols, img)) == 1; got != tc.Want {
			t.Errorf("policy %v gates %s (repository %s, tag %q): %v, want %v", tc.Images, tc.Image, repo, tag, got, tc.Want)
		}
	}
}
