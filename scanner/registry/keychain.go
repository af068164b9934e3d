package registry

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"

	"github.com/imagetrust/imagetrust/scanner/internal/redact"
)

// dockerHubAliases are the names users put in docker config files for Docker Hub; ggcr calls
// it index.docker.io.
var dockerHubAliases = map[string]bool{
	"docker.io":               true,
	"index.docker.io":         true,
	"registry-1.docker.io":    true,
	"registry.hub.docker.com": true,
}

type credEntry struct {
	host string // normalised host, may contain glob parts ("*.example.com")
	path string // optional repository prefix ("team/app"), kubelet-style
	cfg  authn.AuthConfig
}

// configKeychain resolves credentials parsed from a docker config / dockerconfigjson payload
// with kubelet's matching rules: the host must match (globs per dot-separated label), an entry
// with a path applies to repositories under it, and the most specific entry wins.
type configKeychain struct {
	entries []credEntry
}

// Resolve implements authn.Keychain.
func (k *configKeychain) Resolve(target authn.Resource) (authn.Authenticator, error) {
	host := normaliseHost(target.RegistryStr())
	repoPath := ""
	if s := target.String(); strings.HasPrefix(s, target.RegistryStr()+"/") {
		repoPath = strings.TrimPrefix(s, target.RegistryStr()+"/")
	}
	var best *credEntry
	for i := range k.entries {
		e := &k.entries[i]
		if !hostMatches(e.host, host) {
			continue
		}
		if e.path != "" && repoPath != e.path && !strings.HasPrefix(repoPath, e.path+"/") {
			continue
		}
		if best == nil || moreSpecific(e, best) {
			best = e
		}
	}
	if best == nil {
		return authn.Anonymous, nil
	}
	return authn.FromConfig(best.cfg), nil
}

// moreSpecific prefers a longer path, then a literal host over a glob, then the longer host.
func moreSpecific(a, b *credEntry) bool {
	if len(a.path) != len(b.path) {
		return len(a.path) > len(b.path)
	}
	ag, bg := strings.Contains(a.host, "*"), strings.Contains(b.host, "*")
	if ag != bg {
		return !ag
	}
	return len(a.host) > len(b.host)
}

func hostMatches(pattern, host string) bool {
	if pattern == host {
		return true
	}
	if !strings.Contains(pattern, "*") {
		return false
	}
	pHost, pPort := splitPort(pattern)
	hHost, hPort := splitPort(host)
	if pPort != hPort {
		return false
	}
	pl, hl := strings.Split(pHost, "."), strings.Split(hHost, ".")
	if len(pl) != len(hl) {
		return false
	}
	for i := range pl {
		if ok, err := path.Match(pl[i], hl[i]); err != nil || !ok {
			return false
		}
	}
	return true
}

func splitPort(h string) (string, string) {
	if i := strings.LastIndexByte(h, ':'); i >= 0 && !strings.Contains(h[i:], "]") {
		return h[:i], h[i+1:]
	}
	return h, ""
}

// normaliseHost maps Docker Hub aliases to ggcr's index.docker.io and lowercases.
func normaliseHost(h string) string {
	h = strings.ToLower(h)
	if dockerHubAliases[h] {
		return name.DefaultRegistry
	}
	return h
}

// parseServerKey turns a config key ("https://index.docker.io/v1/", "ghcr.io",
// "registry:5000/team/app") into host and repository prefix.
func parseServerKey(key string) (host, repoPath string, err error) {
	k := strings.TrimSpace(key)
	if i := strings.Index(k, "://"); i >= 0 {
		k = k[i+3:]
	}
	k = strings.TrimSuffix(k, "/")
	host, repoPath, _ = strings.Cut(k, "/")
	if host == "" {
		return "", "", errors.New("empty registry host")
	}
	// Docker's legacy keys end in /v1 or /v2; they name the host only.
	repoPath = strings.TrimSuffix(strings.TrimSuffix(repoPath, "/"), "/")
	if repoPath == "v1" || repoPath == "v2" {
		repoPath = ""
	}
	return normaliseHost(host), repoPath, nil
}

type dockerAuthEntry struct {
	Auth          string `json:"auth"`
	Username      string `json:"username"`
	Password      string `json:"password"`
	IdentityToken string `json:"identitytoken"`
	RegistryToken string `json:"registrytoken"`
	Email         string `json:"email"`
}

// KeychainFromDockerConfigJSON parses a kubernetes.io/dockerconfigjson payload (the
// ".dockerconfigjson" key of an image pull secret, same format as ~/.docker/config.json:
// {"auths": {"server": {"auth": base64(user:pass)} or {"username", "password"}}}) into a
// keychain. The legacy .dockercfg shape (a bare server map) is accepted too. Error messages
// name the server and the problem, never a credential. Credential helpers (credsStore,
// credHelpers) are not executed.
func KeychainFromDockerConfigJSON(data []byte) (authn.Keychain, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		return nil, describeJSONError("docker config", err)
	}
	authsRaw, ok := top["auths"]
	var auths map[string]dockerAuthEntry
	if ok {
		if err := json.Unmarshal(authsRaw, &auths); err != nil {
			return nil, describeJSONError("docker config \"auths\"", err)
		}
	} else {
		// Legacy .dockercfg: the top level is the server map. A config.json with only
		// credsStore/credHelpers has no server entries; that is an empty, anonymous keychain.
		auths = map[string]dockerAuthEntry{}
		for k, v := range top {
			if k == "credsStore" || k == "credHelpers" || k == "HttpHeaders" || k == "psFormat" || k == "detachKeys" {
				continue
			}
			var e dockerAuthEntry
			if err := json.Unmarshal(v, &e); err != nil {
				continue // not a server entry
			}
			auths[k] = e
		}
	}

	keys := make([]string, 0, len(auths))
	for k := range auths {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	kc := &configKeychain{}
	for _, server := range keys {
		e := auths[server]
		host, repoPath, err := parseServerKey(server)
		if err != nil {
			return nil, fmt.Errorf("docker config entry %q: %w", redact.URL(server), err)
		}
		cfg := authn.AuthConfig{
			Username:      e.Username,
			Password:      e.Password,
			IdentityToken: e.IdentityToken,
			RegistryToken: e.RegistryToken,
		}
		if e.Auth != "" {
			user, pass, err := decodeAuthField(e.Auth)
			if err != nil {
				return nil, fmt.Errorf("docker config entry %q: %w", redact.URL(server), err)
			}
			cfg.Username, cfg.Password = user, pass
		}
		if cfg == (authn.AuthConfig{}) {
			return nil, fmt.Errorf("docker config entry %q has no credentials (need auth, username/password or a token)", redact.URL(server))
		}
		if cfg.Password != "" && cfg.Username == "" {
			return nil, fmt.Errorf("docker config entry %q has a password but no username", redact.URL(server))
		}
		kc.entries = append(kc.entries, credEntry{host: host, path: repoPath, cfg: cfg})
	}
	return kc, nil
}

// decodeAuthField decodes base64("user:password"); its errors never contain the input.
func decodeAuthField(s string) (string, string, error) {
	s = strings.TrimSpace(s)
	var raw []byte
	var err error
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if raw, err = enc.DecodeString(s); err == nil {
			break
		}
	}
	if err != nil {
		return "", "", errors.New(`"auth" field is not valid base64`)
	}
	user, pass, ok := strings.Cut(string(raw), ":")
	if !ok || user == "" {
		return "", "", errors.New(`"auth" field does not decode to "username:password"`)
	}
	return user, strings.TrimSuffix(pass, "\n"), nil
}

// describeJSONError reports where the JSON is broken without quoting it: encoding/json's
// messages can echo a character, and we do not want any of a secret's bytes in a log.
func describeJSONError(what string, err error) error {
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		return fmt.Errorf("%s is not valid JSON (syntax error at byte %d)", what, syn.Offset)
	}
	var typ *json.UnmarshalTypeError
	if errors.As(err, &typ) {
		return fmt.Errorf("%s has the wrong shape (field %q must not be a %s)", what, typ.Field, typ.Value)
	}
	return fmt.Errorf("%s is not valid JSON", what)
}

// KeychainFromFile reads a docker config file (e.g. ~/.docker/config.json) for the CLI. A
// missing file is an error: the caller asked for it explicitly.
func KeychainFromFile(path string) (authn.Keychain, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading docker config: %w", err)
	}
	kc, err := KeychainFromDockerConfigJSON(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return kc, nil
}
