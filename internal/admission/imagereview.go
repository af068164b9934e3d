package admission

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	imagepolicyv1alpha1 "k8s.io/api/imagepolicy/v1alpha1"
)

// ImageReviewPath is where the API server's ImagePolicyWebhook plugin posts ImageReviews.
const ImageReviewPath = "/imagepolicy"

// ImageReviewWarningsKey is the audit annotation (prefixed by the API server with
// imagepolicywebhook.image-policy.k8s.io/) that carries what the webhook door would have
// warned about: ImageReview has no way to warn the client.
const ImageReviewWarningsKey = "imagetrust-warnings"

// maxBody bounds the request bodies the HTTP doors read.
const maxBody = 1 << 20

// imageReviewHandler is the ImagePolicyWebhook front door. ImageReview carries the images and
// the namespace, not the user or the Pod's name, so break-glass does not apply here.
type imageReviewHandler struct{ a *Admitter }

func (h *imageReviewHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST an imagepolicy.k8s.io/v1alpha1 ImageReview", http.StatusMethodNotAllowed)
		return
	}
	var rev imagepolicyv1alpha1.ImageReview
	if err := json.NewDecoder(io.LimitReader(r.Body, maxBody)).Decode(&rev); err != nil {
		http.Error(w, fmt.Sprintf("decoding ImageReview: %v", err), http.StatusBadRequest)
		return
	}
	req := Request{Object: ObjectRef{Kind: "Pod", Namespace: rev.Spec.Namespace}}
	for _, c := range rev.Spec.Containers {
		req.Containers = append(req.Containers, Container{Kind: KindContainer, Image: strings.TrimSpace(c.Image)})
	}
	d, err := h.a.Admit(r.Context(), req, false)
	if err != nil {
		// Any non-2xx answer makes the API server apply its defaultAllow setting.
		http.Error(w, err.Error(), int(errorCode(err)))
		return
	}
	rev.Status = imagepolicyv1alpha1.ImageReviewStatus{Allowed: d.Allowed, Reason: d.Message}
	if len(d.Warnings) > 0 {
		rev.Status.AuditAnnotations = map[string]string{ImageReviewWarningsKey: strings.Join(d.Warnings, "; ")}
	}
	if rev.APIVersion == "" {
		rev.APIVersion, rev.Kind = imagepolicyv1alpha1.SchemeGroupVersion.String(), "ImageReview"
	}
	writeJSON(w, rev)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
