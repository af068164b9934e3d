package controllers

// An imageScope is what one pass over an image works from: which namespaces want it, what each
// of them knows about it and which policies apply there — decided once, under the demand lock.

import (
	"slices"
	"sort"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	securityv1alpha1 "github.com/imagetrust/imagetrust/api/v1alpha1"
	"github.com/imagetrust/imagetrust/scanner"
)

// imageScope is an immutable snapshot of the demand on one image.
type imageScope struct {
	key    imageKey
	image  scanner.Image
	access *access
	// union is every policy that applies in any namespace wanting the image, by name:
	// verification runs once against the union of their authorities.
	union []*compiledPolicy
	// authorityKey fingerprints the union's authorities.
	authorityKey string
	namespaces   []nsScope
	// version and policyGen identify the demand the scope was taken from.
	version, policyGen uint64
}

// nsScope is one namespace's share of an imageScope.
type nsScope struct {
	namespace string
	view      nsView
	policies  []*compiledPolicy
}

// nsView is what a namespace knows about an image: its repository, tags, workloads and scans.
type nsView struct {
	repo      string
	tags      []string
	workloads []workloadView
	total     int
	scans     []string
	owners    []metav1.OwnerReference
}

type workloadView struct {
	Workload
	containers []string
}

// scannerPolicies is the union as the scanner takes it.
func (s *imageScope) scannerPolicies() []scanner.Policy { return scannerPolicies(s.union) }

// scope returns the current scope of an image; ok is false when nothing wants it.
func (d *demand) scope(k imageKey) (imageScope, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	w := d.wants[k]
	if w == nil || !w.wanted() {
		return imageScope{}, false
	}
	s := imageScope{key: k, image: w.image, access: w.access, version: w.version, policyGen: d.policyGen}
	seen := map[string]bool{}
	for _, ns := range d.namespacesLocked(w) {
		v := d.viewLocked(k, w, ns)
		pols := d.policiesForLocked(ns, v.repo, v.tags)
		s.namespaces = append(s.namespaces, nsScope{namespace: ns, view: v, policies: pols})
		for _, p := range pols {
			if !seen[p.Name] {
				seen[p.Name] = true
				s.union = append(s.union, p)
			}
		}
	}
	sort.Slice(s.union, func(i, j int) bool { return s.union[i].Name < s.union[j].Name })
	s.authorityKey = authorityKey(s.union)
	return s, true
}

// current reports whether the demand the scope was taken from is still the demand now.
func (d *demand) current(s *imageScope) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	w := d.wants[s.key]
	return w != nil && w.version == s.version && d.policyGen == s.policyGen
}

// namespacesLocked lists the namespaces that want an image, sorted.
func (d *demand) namespacesLocked(w *want) []string {
	set := map[string]bool{}
	for p := range w.pods {
		set[p.Namespace] = true
	}
	for s := range w.scans {
		set[s.Namespace] = true
	}
	for ns := range w.requests {
		set[ns] = true
	}
	out := make([]string, 0, len(set))
	for ns := range set {
		out = append(out, ns)
	}
	sort.Strings(out)
	return out
}

// viewLocked collects a namespace's view of an image from its pod and scan sources.
func (d *demand) viewLocked(k imageKey, w *want, ns string) nsView {
	v := nsView{repo: k.Repository}
	tags := map[string]bool{}
	wl := map[string]*workloadView{}
	for p := range w.pods {
		if p.Namespace != ns {
			continue
		}
		for _, u := range d.pods[p].uses {
			if u.image() != k {
				continue
			}
			if u.Tag != "" {
				tags[u.Tag] = true
			}
			id := u.Workload.Kind + "/" + u.Workload.Name
			if wl[id] == nil {
				wl[id] = &workloadView{Workload: u.Workload}
			}
			if !slices.Contains(wl[id].containers, u.Container) {
				wl[id].containers = append(wl[id].containers, u.Container)
			}
		}
	}
	for s := range w.scans {
		if s.Namespace != ns {
			continue
		}
		src := d.scans[s]
		for _, t := range src.images[k].Tags {
			tags[t] = true
		}
		v.scans = append(v.scans, s.Name)
		v.owners = append(v.owners, metav1.OwnerReference{
			APIVersion: securityv1alpha1.GroupVersion.String(), Kind: "RegistryScan", Name: s.Name, UID: src.uid,
		})
	}
	if r, ok := w.requests[ns]; ok && r.tag != "" {
		tags[r.tag] = true
	}
	sort.Strings(v.scans)
	sort.Slice(v.owners, func(i, j int) bool { return v.owners[i].Name < v.owners[j].Name })
	for t := range tags {
		v.tags = append(v.tags, t)
	}
	sort.Strings(v.tags)
	for _, x := range wl {
		sort.Strings(x.containers)
		v.workloads = append(v.workloads, *x)
	}
	sort.Slice(v.workloads, func(i, j int) bool {
		if v.workloads[i].Kind != v.workloads[j].Kind {
			return v.workloads[i].Kind < v.workloads[j].Kind
		}
		return v.workloads[i].Name < v.workloads[j].Name
	})
	v.total = len(v.workloads)
	return v
}

// policiesForLocked returns the policies that apply to an image in a namespace, by name.
func (d *demand) policiesForLocked(ns, repo string, tags []string) []*compiledPolicy {
	var out []*compiledPolicy
	for _, p := range d.policies {
		if p.appliesTo(repo, tags, d.nsLabels[ns]) {
			out = append(out, p)
		}
	}
	return out
}

// policyMatches counts the reports (namespace, image) each policy applies to.
func (d *demand) policyMatches() map[string]int {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := map[string]int{}
	for k, w := range d.wants {
		for _, ns := range d.namespacesLocked(w) {
			v := d.viewLocked(k, w, ns)
			for _, p := range d.policiesForLocked(ns, v.repo, v.tags) {
				out[p.Name]++
			}
		}
	}
	return out
}

// appliedBy lists the wanted images a policy applies to in some namespace.
func (d *demand) appliedBy(name string) []imageKey {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []imageKey
	for k, w := range d.wants {
		if !w.wanted() {
			continue
		}
	namespaces:
		for _, ns := range d.namespacesLocked(w) {
			v := d.viewLocked(k, w, ns)
			for _, p := range d.policiesForLocked(ns, v.repo, v.tags) {
				if p.Name == name {
					out = append(out, k)
					break namespaces
				}
			}
		}
	}
	return out
}
