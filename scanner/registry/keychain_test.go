package registry_test

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"

	"github.com/imagetrust/imagetrust/scanner/registry"
	"github.com/imagetrust/imagetrust/scanner/registry/registrytest"
)

const (
	testUser = "robot$ci"
	testPass = "p4ss-W0rd-do-not-leak"
)

func dockerConfigAuth(server, user, pass string) []byte {
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
	return []byte(fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, server, auth))
}

func dockerConfigUserPass(server, user, pass string) []byte {
	return []byte(fmt.Sprintf(`{"auths":{%q:{"username":%q,"password":%q}}}`, server, user, pass))
}

func TestKeychainAgainstBasicAuthRegistry(t *testing.T) {
	reg := registrytest.New(t, registrytest.WithBasicAuth(testUser, testPass))
	want := pushImage(t, reg, "private/app:1.0")

	cases := []struct {
		name   string
		config []byte
		ok     bool
	}{
		{"auth field", dockerConfigAuth(reg.Host(), testUser, testPass), true},
		{"username/password", dockerConfigUserPass(reg.Host(), testUser, testPass), true},
		{"URL-style key", dockerConfigAuth("https://"+reg.Host()+"/v2/", testUser, testPass), true},
		{"repository-scoped key", dockerConfigAuth(reg.Host()+"/private", testUser, testPass), true},
		{"wrong password", dockerConfigAuth(reg.Host(), testUser, "wrong-"+testPass), false},
		{"credentials for another registry", dockerConfigAuth("other.example", testUser, testPass), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			kc, err := registry.KeychainFromDockerConfigJSON(tc.config)
			if err != nil {
				t.Fatalf("KeychainFromDockerConfigJSON: %v", err)
			}
			c := newClient(t, reg, func(o *registry.Options) { o.Keychain = kc })
			got, err := c.Resolve(ctxT(t), reg.Repo("private/app:1.0"), nil)
			if tc.ok {
				if err != nil || len(got) != 1 || got[0].Digest != want {
					t.Fatalf("Resolve = %+v, %v; want %s", got, err, want)
				}
				tags, err := c.ListTags(ctxT(t), reg.Repo("private/app"))
				if err != nil || len(tags) != 1 || tags[0] != "1.0" {
					t.Errorf("ListTags = %v, %v; want [1.0]", tags, err)
				}
				return
			}
			if !registry.IsUnauthorized(err) {
				t.Fatalf("err = %v, want unauthorized", err)
			}
			if strings.Contains(err.Error(), testPass) || strings.Contains(err.Error(), base64.StdEncoding.EncodeToString([]byte(testUser + ":"))[:8]) {
				t.Errorf("error leaks credentials: %q", err)
			}
		})
	}
}

func TestKeychainDockerHubAliasesAndSpecificity(t *testing.T) {
	cfg := []byte(`{"auths":{
		"https://index.docker.io/v1/": {"auth": "` + base64.StdEncoding.EncodeToString([]byte("hubuser:hubpass")) + `"},
		"ghcr.io":                     {"username": "gh", "password": "general"},
		"ghcr.io/org/special":         {"username": "gh", "password": "special"},
		"*.azurecr.io":                {"username": "az", "password": "wild"}
	}}`)
	kc, err := registry.KeychainFromDockerConfigJSON(cfg)
	if err != nil {
		t.Fatalf("KeychainFromDockerConfigJSON: %v", err)
	}
	cases := []struct {
		repo       string
		user, pass string
	}{
		{"nginx", "hubuser", "hubpass"},
		{"docker.io/library/nginx", "hubuser", "hubpass"},
		{"index.docker.io/myorg/app", "hubuser", "hubpass"},
		{"ghcr.io/org/app", "gh", "general"},
		{"ghcr.io/org/special", "gh", "special"},
		{"ghcr.io/org/special/sub", "gh", "special"},
		{"ghcr.io/org/specialist", "gh", "general"},
		{"myreg.azurecr.io/app", "az", "wild"},
		{"a.b.azurecr.io/app", "", ""}, // globs match one label, like kubelet
		{"quay.io/org/app", "", ""},
	}
	for _, tc := range cases {
		repo, err := name.NewRepository(tc.repo)
		if err != nil {
			t.Fatal(err)
		}
		a, err := kc.Resolve(repo)
		if err != nil {
			t.Fatalf("Resolve(%s): %v", tc.repo, err)
		}
		cfg, err := a.Authorization()
		if err != nil {
			t.Fatal(err)
		}
		if tc.user == "" {
			if a != authn.Anonymous {
				t.Errorf("%s: got user %q, want anonymous", tc.repo, cfg.Username)
			}
			continue
		}
		if cfg.Username != tc.user || cfg.Password != tc.pass {
			t.Errorf("%s: got %s/%s, want %s/%s", tc.repo, cfg.Username, cfg.Password, tc.user, tc.pass)
		}
	}
}

func TestKeychainErrorsDoNotEchoSecrets(t *testing.T) {
	secret := "Zm9vOmJhcg-very-secret"
	cases := []struct {
		name, data, want string
	}{
		{"not JSON", `{"auths": {"r.io": {"auth": "` + secret + `"`, "not valid JSON"},
		{"auth not base64", `{"auths":{"r.io":{"auth":"` + secret + `!!"}}}`, `"auth" field is not valid base64`},
		{"auth without colon", `{"auths":{"r.io":{"auth":"` + base64.StdEncoding.EncodeToString([]byte(secret)) + `"}}}`, `does not decode to "username:password"`},
		{"no credentials", `{"auths":{"r.io":{}}}`, "has no credentials"},
		{"password without user", `{"auths":{"r.io":{"password":"` + secret + `"}}}`, "password but no username"},
		{"wrong shape", `{"auths":{"r.io":{"auth":["` + secret + `"]}}}`, "wrong shape"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := registry.KeychainFromDockerConfigJSON([]byte(tc.data))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
			if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "Zm9v") {
				t.Errorf("error echoes the secret: %q", err)
			}
		})
	}
}

func TestKeychainLegacyDockercfgAndCredsStoreOnly(t *testing.T) {
	legacy := []byte(`{"r.io":{"auth":"` + base64.StdEncoding.EncodeToString([]byte("u:p")) + `","email":"x@y"}}`)
	kc, err := registry.KeychainFromDockerConfigJSON(legacy)
	if err != nil {
		t.Fatalf("legacy .dockercfg: %v", err)
	}
	repo, _ := name.NewRepository("r.io/app")
	a, _ := kc.Resolve(repo)
	if cfg, _ := a.Authorization(); cfg.Username != "u" || cfg.Password != "p" {
		t.Errorf("legacy format: got %+v", cfg)
	}

	kc, err = registry.KeychainFromDockerConfigJSON([]byte(`{"credsStore":"desktop"}`))
	if err != nil {
		t.Fatalf("credsStore-only config: %v", err)
	}
	if a, _ := kc.Resolve(repo); a != authn.Anonymous {
		t.Errorf("credsStore-only config should resolve anonymously")
	}
}

func TestKeychainFromFile(t *testing.T) {
	reg := registrytest.New(t, registrytest.WithBasicAuth(testUser, testPass))
	want := pushImage(t, reg, "app:1.0")
	path := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(path, dockerConfigAuth(reg.Host(), testUser, testPass), 0o600); err != nil {
		t.Fatal(err)
	}
	kc, err := registry.KeychainFromFile(path)
	if err != nil {
		t.Fatalf("KeychainFromFile: %v", err)
	}
	c := newClient(t, reg, func(o *registry.Options) { o.Keychain = kc })
	got, err := c.Resolve(ctxT(t), reg.Repo("app:1.0"), nil)
	if err != nil || got[0].Digest != want {
		t.Fatalf("Resolve = %+v, %v", got, err)
	}
	if _, err := registry.KeychainFromFile(filepath.Join(t.TempDir(), "missing.json")); err == nil || !strings.Contains(err.Error(), "reading docker config") {
		t.Errorf("missing file: err = %v", err)
	}
}
