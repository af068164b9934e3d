package main

import (
	"fmt"
	"sort"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
)

// webhookDefinitions turns ValidatingWebhookConfigurations into the CSV's webhookdefinitions
// and reports which Services they call (OLM creates its own Service for each webhook, so those
// do not ship). OLM sets the namespace selector, the client configuration and the CA bundle
// itself; a webhook that needs any of them to be something else cannot be expressed, and
// saying so beats shipping a webhook that behaves differently under OLM.
func webhookDefinitions(cfgs, services []*unstructured.Unstructured, dep *unstructured.Unstructured) ([]any, map[string]bool, error) {
	byName := map[string]*unstructured.Unstructured{}
	for _, s := range services {
		byName[s.GetName()] = s
	}
	podLabels, _, _ := unstructured.NestedStringMap(dep.Object, "spec", "template", "metadata", "labels")
	used := map[string]bool{}
	var defs []any
	sort.Slice(cfgs, func(i, j int) bool { return cfgs[i].GetName() < cfgs[j].GetName() })
	for _, cfg := range cfgs {
		hooks, _, _ := unstructured.NestedSlice(cfg.Object, "webhooks")
		for _, h := range hooks {
			wh, _ := h.(map[string]any)
			def, svc, err := webhookDefinition(cfg.GetName(), wh, byName, podLabels, dep.GetName())
			if err != nil {
				return nil, nil, err
			}
			used[svc] = true
			defs = append(defs, def)
		}
	}
	return defs, used, nil
}

// webhookDefinition converts one webhook; svc is the Service it called.
func webhookDefinition(cfgName string, wh map[string]any, services map[string]*unstructured.Unstructured, podLabels map[string]string, depName string) (map[string]any, string, error) {
	name, _ := wh["name"].(string)
	where := fmt.Sprintf("ValidatingWebhookConfiguration %s webhook %q", cfgName, name)
	if _, ok := wh["namespaceSelector"]; ok {
		return nil, "", fmt.Errorf("%s: OLM chooses the namespaceSelector of an operator's webhooks; remove it from config/manifests", where)
	}
	cc, _ := wh["clientConfig"].(map[string]any)
	if _, ok := cc["url"]; ok {
		return nil, "", fmt.Errorf("%s: a URL client configuration cannot be bundled; OLM calls the Deployment through a Service", where)
	}
	ref, _ := cc["service"].(map[string]any)
	svcName, _ := ref["name"].(string)
	svc, ok := services[svcName]
	if !ok {
		return nil, "", fmt.Errorf("%s calls Service %q, which the input does not define", where, svcName)
	}
	sel, _, _ := unstructured.NestedStringMap(svc.Object, "spec", "selector")
	if len(sel) == 0 || !labels.SelectorFromSet(sel).Matches(labels.Set(podLabels)) {
		return nil, "", fmt.Errorf("%s: Service %s does not select the Deployment %s's Pods", where, svcName, depName)
	}
	port, target, err := servicePort(svc, ref["port"])
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", where, err)
	}
	def := map[string]any{
		"generateName":   name,
		"type":           "ValidatingAdmissionWebhook",
		"deploymentName": depName,
		"containerPort":  port,
		"targetPort":     target,
	}
	if p, ok := ref["path"]; ok {
		def["webhookPath"] = p
	}
	for _, k := range []string{"rules", "failurePolicy", "matchPolicy", "objectSelector", "sideEffects", "timeoutSeconds", "admissionReviewVersions", "matchConditions"} {
		if v, ok := wh[k]; ok {
			def[k] = v
		}
	}
	if _, ok := def["matchConditions"]; ok {
		return nil, "", fmt.Errorf("%s: matchConditions have no place in an OLM webhookdefinition", where)
	}
	return def, svcName, nil
}

// servicePort finds the Service port the webhook calls (by number; 443 when unset) and its
// target port.
func servicePort(svc *unstructured.Unstructured, want any) (int64, any, error) {
	n, _ := asInt(want)
	if n == 0 {
		n = 443
	}
	ports, _, _ := unstructured.NestedSlice(svc.Object, "spec", "ports")
	for _, p := range ports {
		m, _ := p.(map[string]any)
		if port, _ := asInt(m["port"]); port == n {
			target := m["targetPort"]
			if target == nil {
				target = n
			}
			return n, target, nil
		}
	}
	return 0, nil, fmt.Errorf("the Service %s has no port %d", svc.GetName(), n)
}

// setWebhookDefinitions writes the definitions into the CSV's spec.
func setWebhookDefinitions(csv *unstructured.Unstructured, defs []any) error {
	if len(defs) == 0 {
		return nil
	}
	return unstructured.SetNestedSlice(csv.Object, defs, "spec", "webhookdefinitions")
}

// asInt reads a number from decoded YAML or JSON (float64) or from Go code (int, int64).
func asInt(v any) (int64, bool) {
	switch n := v.(type) {
	case int64:
		return n, true
	case int:
		return int64(n), true
	case float64:
		return int64(n), n == float64(int64(n))
	}
	return 0, false
}
