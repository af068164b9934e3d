package controllers

// demand records what is wanted — which pods and RegistryScans want which images, namespace
// labels, policies and grace periods — and hands each pass one immutable imageScope.

import (
	"maps"
	"slices"
	"sort"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/imagetrust/imagetrust/scanner"
)

// PodUse is one container of a pod running an image digest.
type PodUse struct {
	Digest     string
	Repository string
	Tag        string
	Container  string
	Workload   Workload
}

func (u PodUse) image() imageKey { return imageKey{u.Repository, u.Digest} }

// ScanImage is one platform digest a RegistryScan found, with every tag that pointed at it.
type ScanImage struct {
	Image scanner.Image
	Tags  []string
}

type podSource struct {
	uses   []PodUse
	access *access
}

type scanSource struct {
	uid    types.UID
	images map[imageKey]*ScanImage
	access *access
}

// want is who wants one image, and how its registry is reached.
type want struct {
	image  scanner.Image
	access *access
	pods   map[types.NamespacedName]struct{}
	scans  map[types.NamespacedName]struct{}
	// requests are the namespaces whose admission asked for the image, by namespace.
	requests map[string]request
	// version changes whenever the image's sources change, so a pass can tell that the scope
	// it worked from is no longer current.
	version uint64
}

// request is admission asking for an image in a namespace: wanted for the grace period from at.
type request struct {
	tag string
	at  time.Time
}

func (w *want) wanted() bool { return len(w.pods) > 0 || len(w.scans) > 0 || len(w.requests) > 0 }

// demand is the state of the sources. Its methods return the images whose work they changed;
// the Engine queues them.
type demand struct {
	clock Clock

	mu        sync.Mutex
	wants     map[imageKey]*want
	pods      map[types.NamespacedName]*podSource
	scans     map[types.NamespacedName]*scanSource
	nsLabels  map[string]map[string]string
	policies  []*compiledPolicy
	policyGen uint64
	version   uint64
	unwanted  map[reportKey]time.Time
	startedAt time.Time
}

func newDemand(clock Clock) *demand {
	return &demand{clock: clock, wants: map[imageKey]*want{}, pods: map[types.NamespacedName]*podSource{},
		scans: map[types.NamespacedName]*scanSource{}, nsLabels: map[string]map[string]string{},
		unwanted: map[reportKey]time.Time{}, startedAt: clock.Now()}
}

// started resets the moment from which reports nobody claimed start their grace period.
func (d *demand) started() {
	d.mu.Lock()
	d.startedAt = d.clock.Now()
	d.mu.Unlock()
}

// ensureLocked returns the want of an image, creating it when new.
func (d *demand) ensureLocked(img scanner.Image, acc *access) *want {
	key := imageKey{img.Repository, img.Digest}
	w := d.wants[key]
	if w == nil {
		w = &want{image: img, access: acc, pods: map[types.NamespacedName]struct{}{}, scans: map[types.NamespacedName]struct{}{},
			requests: map[string]request{}}
		d.wants[key] = w
	}
	if w.image.Platform == "" && img.Platform != "" {
		w.image.Platform, w.image.IndexDigest = img.Platform, img.IndexDigest
	}
	if acc != nil && acc != anonymous {
		w.access = acc
	} else if w.access == nil {
		w.access = anonymous
	}
	return w
}

// touchLocked marks the images' sources as changed and updates their grace periods in ns.
func (d *demand) touchLocked(keys map[imageKey]bool, ns string) []imageKey {
	d.version++
	out := make([]imageKey, 0, len(keys))
	for k := range keys {
		w := d.wants[k]
		if w == nil {
			continue
		}
		w.version = d.version
		d.updateGraceLocked(w, ns)
		out = append(out, k)
	}
	return out
}

// setPodUses records what a pod runs (nil when the pod is gone or finished).
func (d *demand) setPodUses(pod types.NamespacedName, uses []PodUse, acc *access) []imageKey {
	d.mu.Lock()
	defer d.mu.Unlock()
	old := d.pods[pod]
	if old != nil && slices.Equal(old.uses, uses) && old.access == acc {
		return nil
	}
	touched := map[imageKey]bool{}
	if old != nil {
		for _, u := range old.uses {
			touched[u.image()] = true
		}
	}
	if len(uses) == 0 {
		delete(d.pods, pod)
	} else {
		d.pods[pod] = &podSource{uses: uses, access: acc}
	}
	now := map[imageKey]bool{}
	for _, u := range uses {
		now[u.image()], touched[u.image()] = true, true
		d.ensureLocked(scanner.Image{Repository: u.Repository, Tag: u.Tag, Digest: u.Digest}, acc).pods[pod] = struct{}{}
	}
	for k := range touched {
		if w := d.wants[k]; w != nil && !now[k] {
			delete(w.pods, pod)
		}
	}
	return d.touchLocked(touched, pod.Namespace)
}

// setScanImages records the images a RegistryScan found in its last successful run.
func (d *demand) setScanImages(scan types.NamespacedName, uid types.UID, images []ScanImage, acc *access) []imageKey {
	src := &scanSource{uid: uid, images: map[imageKey]*ScanImage{}, access: acc}
	for i := range images {
		im := images[i]
		im.Tags = slices.Clone(im.Tags)
		sort.Strings(im.Tags)
		k := imageKey{im.Image.Repository, im.Image.Digest}
		if prev := src.images[k]; prev != nil {
			prev.Tags = mergeSorted(prev.Tags, im.Tags)
			continue
		}
		src.images[k] = &im
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	old := d.scans[scan]
	if old != nil && old.uid == uid && old.access == acc && sameScanImages(old.images, src.images) {
		return nil
	}
	d.scans[scan] = src
	touched := map[imageKey]bool{}
	if old != nil {
		for k := range old.images {
			touched[k] = true
		}
	}
	for k, im := range src.images {
		touched[k] = true
		d.ensureLocked(im.Image, acc).scans[scan] = struct{}{}
	}
	for k := range touched {
		if _, ok := src.images[k]; !ok {
			if w := d.wants[k]; w != nil {
				delete(w.scans, scan)
			}
		}
	}
	return d.touchLocked(touched, scan.Namespace)
}

// setRequest records that admission asked for an image in a namespace (ns.Namespace) at at.
func (d *demand) setRequest(ns types.NamespacedName, r admissionRequest, acc *access, at time.Time) []imageKey {
	d.mu.Lock()
	defer d.mu.Unlock()
	w := d.ensureLocked(scanner.Image{Repository: r.repository, Digest: r.digest, Tag: r.tag}, acc)
	if old, ok := w.requests[ns.Namespace]; ok && !at.After(old.at) {
		return nil
	}
	w.requests[ns.Namespace] = request{tag: r.tag, at: at}
	return d.touchLocked(map[imageKey]bool{{r.repository, r.digest}: true}, ns.Namespace)
}

// hasScan reports whether a RegistryScan's images are known (false after a restart until the
// scan runs or is seeded from its reports).
func (d *demand) hasScan(scan types.NamespacedName) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, ok := d.scans[scan]
	return ok
}

// removeScan forgets a deleted RegistryScan; its reports age out after the grace period unless
// pods use the images too.
func (d *demand) removeScan(scan types.NamespacedName) []imageKey {
	d.mu.Lock()
	defer d.mu.Unlock()
	old := d.scans[scan]
	if old == nil {
		return nil
	}
	delete(d.scans, scan)
	touched := map[imageKey]bool{}
	for k := range old.images {
		if w := d.wants[k]; w != nil {
			delete(w.scans, scan)
			touched[k] = true
		}
	}
	return d.touchLocked(touched, scan.Namespace)
}

// setPolicies installs the compiled policies; every wanted image is affected.
func (d *demand) setPolicies(pols []*compiledPolicy) []imageKey {
	pols = slices.Clone(pols)
	sort.Slice(pols, func(i, j int) bool { return pols[i].Name < pols[j].Name })
	d.mu.Lock()
	defer d.mu.Unlock()
	d.policies = pols
	d.policyGen++
	return d.wantedLocked()
}

// setNamespaceLabels records a namespace's labels (nil: the namespace is gone); the images
// wanted there are affected when the labels changed.
func (d *demand) setNamespaceLabels(ns string, lbls map[string]string) []imageKey {
	d.mu.Lock()
	defer d.mu.Unlock()
	old, ok := d.nsLabels[ns]
	if lbls == nil {
		delete(d.nsLabels, ns)
	} else {
		d.nsLabels[ns] = lbls
	}
	if ok && maps.Equal(old, lbls) {
		return nil
	}
	d.policyGen++
	var out []imageKey
	for k, w := range d.wants {
		if d.wantedInLocked(w, ns) {
			out = append(out, k)
		}
	}
	return out
}

// changes grows whenever a source, a policy or a namespace's labels change.
func (d *demand) changes() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.version + d.policyGen
}

// wantedLocked lists every wanted image.
func (d *demand) wantedLocked() []imageKey {
	out := make([]imageKey, 0, len(d.wants))
	for k, w := range d.wants {
		if w.wanted() {
			out = append(out, k)
		}
	}
	return out
}

// wanted lists every wanted image.
func (d *demand) wanted() []imageKey {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.wantedLocked()
}

// isWanted reports whether any source wants the image.
func (d *demand) isWanted(k imageKey) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	w := d.wants[k]
	return w != nil && w.wanted()
}

func mergeSorted(a, b []string) []string {
	out := append(slices.Clone(a), b...)
	sort.Strings(out)
	return slices.Compact(out)
}

func sameScanImages(a, b map[imageKey]*ScanImage) bool {
	return maps.EqualFunc(a, b, func(x, y *ScanImage) bool { return x.Image == y.Image && slices.Equal(x.Tags, y.Tags) })
}
