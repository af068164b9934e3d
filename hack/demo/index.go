package main

import (
	"context"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/imagetrust/imagetrust/internal/demo"
)

func remoteIndex(img demo.Image, w *demo.World) (*v1.IndexManifest, error) {
	idx, err := remote.Index(img.Ref, w.Registry.RemoteOptions(context.Background())...)
	if err != nil {
		return nil, err
	}
	return idx.IndexManifest()
}
