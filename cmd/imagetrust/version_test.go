package main

import (
	"runtime/debug"
	"testing"
)

// TestBuildVersion: the Makefile's -X values win; without them the VCS stamp Go records gives
// the commit, marked dirty for a modified tree; the libraries come from the build information.
func TestBuildVersion(t *testing.T) {
	v := buildVersion()
	if v.Grype != "v0.121.2" || v.Syft != "v1.57.0" || v.Cosign != "v2.6.5" || v.SigstoreGo != "v1.3.0" || v.NotationGo != "v1.3.2" || v.GoContainerRegistry != "v0.22.1" || v.DBSchema != "v6.1.10" {
		t.Errorf("library versions %+v", v)
	}
	version, commit = "v1.2.3", "0123456789ab"
	defer func() { version, commit = "", "" }()
	if v := buildVersion(); v.Imagetrust != "v1.2.3" || v.Commit != "0123456789ab" {
		t.Errorf("with -X: %+v", v)
	}
	for _, tc := range []struct {
		settings []debug.BuildSetting
		want     string
	}{
		{[]debug.BuildSetting{{Key: "vcs.revision", Value: "abc"}, {Key: "vcs.modified", Value: "false"}}, "abc"},
		{[]debug.BuildSetting{{Key: "vcs.modified", Value: "true"}, {Key: "vcs.revision", Value: "abc"}}, "abc-dirty"},
		{[]debug.BuildSetting{{Key: "GOOS", Value: "linux"}}, ""},
	} {
		if got := vcsCommit(tc.settings); got != tc.want {
			t.Errorf("vcsCommit(%v) = %q, want %q", tc.settings, got, tc.want)
		}
	}
}
