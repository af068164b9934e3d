package admission

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// GatekeeperPath is where Gatekeeper's Provider posts ProviderRequests.
const GatekeeperPath = "/gatekeeper"

// Gatekeeper external-data wire format (externaldata.gatekeeper.sh/v1beta1 ProviderRequest and
// ProviderResponse), as Gatekeeper documents it.
type (
	providerRequest struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Request    struct {
			Keys []string `json:"keys"`
		} `json:"request"`
	}
	providerResponse struct {
		APIVersion string       `json:"apiVersion"`
		Kind       string       `json:"kind"`
		Response   responseBody `json:"response"`
	}
	responseBody struct {
		Idempotent  bool           `json:"idempotent"`
		Items       []providerItem `json:"items"`
		SystemError string         `json:"systemError,omitempty"`
	}
	providerItem struct {
		Key   string         `json:"key"`
		Value *ProviderValue `json:"value,omitempty"`
		Error string         `json:"error,omitempty"`
	}
)

// ProviderValue is the value of one key in a ProviderResponse: the decision the webhook door
// would make for a Pod running that one image, plus the image's canonical name for registry
// allow-lists written in Rego.
type ProviderValue struct {
	// Decision is "allow", "warn" or "deny".
	Decision string `json:"decision"`
	// Message explains a denial; Warnings what an allowed image is warned about.
	Message  string   `json:"message,omitempty"`
	Warnings []string `json:"warnings,omitempty"`
	// Repository is canonical (index.docker.io/library/nginx); Registry its host.
	Repository string `json:"repository"`
	Registry   string `json:"registry"`
	// Digest is the digest judged, when known.
	Digest string `json:"digest,omitempty"`
}

// KeySeparator separates the namespace from the image in a key ("shop|registry.example.com/
// app:1.2"): neither a namespace nor an image reference can contain it. A key without it is
// judged as in a namespace without labels.
const KeySeparator = "|"

// maxKeys bounds the keys of one ProviderRequest.
const maxKeys = 256

// gatekeeperHandler is the Gatekeeper external-data front door.
type gatekeeperHandler struct{ a *Admitter }

func (h *gatekeeperHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST an externaldata.gatekeeper.sh ProviderRequest", http.StatusMethodNotAllowed)
		return
	}
	resp := providerResponse{APIVersion: "externaldata.gatekeeper.sh/v1beta1", Kind: "ProviderResponse"}
	// Verdicts change as images are re-verified: Gatekeeper must not treat answers as fixed.
	resp.Response.Idempotent = false
	var req providerRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, maxBody)).Decode(&req); err != nil {
		resp.Response.SystemError = fmt.Sprintf("decoding ProviderRequest: %v", err)
		writeJSON(w, resp)
		return
	}
	if len(req.Request.Keys) > maxKeys {
		resp.Response.SystemError = fmt.Sprintf("%d keys in one request, at most %d", len(req.Request.Keys), maxKeys)
		writeJSON(w, resp)
		return
	}
	resp.Response.Items = make([]providerItem, 0, len(req.Request.Keys))
	for _, key := range req.Request.Keys {
		item, err := h.item(r, key)
		if err != nil && !isKeyError(err) {
			resp.Response.Items, resp.Response.SystemError = nil, err.Error()
			break
		}
		resp.Response.Items = append(resp.Response.Items, item)
	}
	writeJSON(w, resp)
}

// keyError is a problem with one key only.
type keyError struct{ msg string }

func (e *keyError) Error() string { return e.msg }

func isKeyError(err error) bool { _, ok := err.(*keyError); return ok }

// item judges one key. A bad key gets an error on its item; a failure of the whole provider
// (caches not synced) is returned as an error.
func (h *gatekeeperHandler) item(r *http.Request, key string) (providerItem, error) {
	item := providerItem{Key: key}
	ns, image, found := strings.Cut(key, KeySeparator)
	if !found {
		ns, image = "", key
	}
	image = strings.TrimSpace(image)
	ref, err := parseImage(image)
	if err != nil {
		item.Error = err.Error()
		return item, &keyError{item.Error}
	}
	req := Request{Object: ObjectRef{Kind: "Pod", Namespace: ns}, Containers: []Container{{Kind: KindContainer, Image: image}}}
	d, err := h.a.Admit(r.Context(), req, false)
	if err != nil {
		if errorCode(err) == http.StatusNotFound {
			item.Error = err.Error()
			return item, &keyError{item.Error}
		}
		return item, err
	}
	v := &ProviderValue{Decision: "allow", Message: d.Message, Warnings: d.Warnings, Repository: ref.Repository,
		Registry: strings.SplitN(ref.Repository, "/", 2)[0], Digest: ref.Digest}
	if len(d.Images) == 1 && d.Images[0].Digest != "" {
		v.Digest = d.Images[0].Digest
	}
	switch {
	case !d.Allowed:
		v.Decision = "deny"
	case len(d.Warnings) > 0:
		v.Decision = "warn"
	}
	item.Value = v
	return item, nil
}
