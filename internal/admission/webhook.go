package admission

import (
	"context"
	"errors"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// WebhookPath is where the ValidatingWebhookConfiguration sends Pods and workloads.
const WebhookPath = "/validate-imagetrust"

// webhookHandler is the ValidatingWebhook front door.
type webhookHandler struct{ a *Admitter }

// Handle implements admission.Handler.
func (h *webhookHandler) Handle(ctx context.Context, req admission.Request) admission.Response {
	if req.Operation != admissionv1.Create && req.Operation != admissionv1.Update {
		return admission.Allowed("")
	}
	gk := schema.GroupKind{Group: req.Kind.Group, Kind: req.Kind.Kind}
	w, ok, err := DecodeWorkload(gk, req.Object.Raw)
	if !ok {
		return admission.Allowed("not a kind imagetrust checks")
	}
	if err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	if w.Namespace == "" {
		w.Namespace = req.Namespace
	}
	r := Request{Object: w.ref(), Containers: w.Containers, PullSecrets: w.PullSecrets,
		Annotations: w.Annotations, Owned: w.Owned, User: &req.UserInfo}
	if req.Operation == admissionv1.Update && len(req.OldObject.Raw) > 0 {
		old, _, err := DecodeWorkload(gk, req.OldObject.Raw)
		if err != nil {
			return admission.Errored(http.StatusBadRequest, err)
		}
		r.Containers = newImages(w.Containers, old.Containers)
		r.OldAnnotations, r.Update = old.Annotations, true
		if r.OldAnnotations == nil {
			r.OldAnnotations = map[string]string{}
		}
	}
	d, err := h.a.Admit(ctx, r, req.DryRun != nil && *req.DryRun)
	if err != nil {
		return admission.Errored(errorCode(err), err)
	}
	if !d.Allowed {
		return admission.Denied(d.Message).WithWarnings(d.Warnings...)
	}
	return admission.Allowed("").WithWarnings(d.Warnings...)
}

// errorCode is the HTTP status an admission error is reported with.
func errorCode(err error) int32 {
	switch {
	case errors.Is(err, ErrNotReady):
		return http.StatusServiceUnavailable
	case errors.Is(err, errNamespaceUnknown):
		return http.StatusNotFound
	default:
		return http.StatusInternalServerError
	}
}
