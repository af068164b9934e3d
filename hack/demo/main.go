// Command demo is `make demo`: a real local control plane, a local OCI registry with demo
// images, the real manager binary, and the resulting ImageTrustReports — offline, no Docker.
//
// DEMO_KEEP=1 keeps everything running and prints the KUBECONFIG to explore with kubectl.
package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	v1 "github.com/imagetrust/imagetrust/api/v1alpha1"
	"github.com/imagetrust/imagetrust/internal/demo"
	"github.com/imagetrust/imagetrust/internal/testenv"
)

var start = time.Now()

func logf(format string, args ...any) {
	fmt.Printf("demo [%5.1fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "demo: FAILED:", err)
		os.Exit(1)
	}
}

// workload is a demo workload: the pod and its owners as the real controllers would make them.
type workload struct {
	namespace, kind, name, image string
	// platformDigest overrides the digest the "node" pulled (multi-arch images).
	platformDigest string
}

func run() error {
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	keep := os.Getenv("DEMO_KEEP") == "1"
	bin := os.Getenv("IMAGETRUST_BIN")
	if bin == "" {
		bin = filepath.Join(testenv.RepoRoot(), "bin", "imagetrust")
	}
	dir, err := os.MkdirTemp("", "imagetrust-demo-")
	if err != nil {
		return err
	}
	if !keep {
		defer os.RemoveAll(dir)
	}

	logf("starting a local control plane (kube-apiserver + etcd built by hack/control-plane.sh)")
	env, err := testenv.Start()
	if err != nil {
		return err
	}
	defer func() {
		if !keep {
			_ = env.Stop()
		}
	}()
	user, err := env.AddUser(envtest.User{Name: "demo-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return err
	}
	kubeconfig := filepath.Join(dir, "kubeconfig")
	kc, err := user.KubeConfig()
	if err != nil {
		return err
	}
	if err := os.WriteFile(kubeconfig, kc, 0o600); err != nil {
		return err
	}
	logf("control plane up at %s; CRDs installed", env.Config.Host)

	world, err := demo.Build(ctx, dir, logf)
	if err != nil {
		return fmt.Errorf("building the demo images: %w", err)
	}
	defer func() {
		if !keep {
			world.Close()
		}
	}()
	for _, img := range world.Images {
		logf("  pushed %-15s %s", img.Name, img.Ref.DigestStr()[:19])
	}

	c := env.Client
	logf("applying ImageTrustPolicies, a RegistryScan and demo workloads")
	policies, err := applyPolicies(ctx, c, world)
	if err != nil {
		return err
	}
	byName := map[string]demo.Image{}
	for _, img := range world.Images {
		byName[img.Name] = img
	}
	amd64, err := platformDigest(byName["multiarch"], "linux/amd64", world)
	if err != nil {
		return err
	}
	workloads := []workload{
		{namespace: "shop", kind: "Deployment", name: "web", image: "signed-key"},
		{namespace: "shop", kind: "Deployment", name: "api", image: "signed-keyless"},
		{namespace: "shop", kind: "Pod", name: "legacy", image: "unsigned"},
		{namespace: "shop", kind: "DaemonSet", name: "agent", image: "multiarch", platformDigest: amd64},
		{namespace: "payments", kind: "StatefulSet", name: "ledger", image: "tampered"},
		{namespace: "payments", kind: "Deployment", name: "web", image: "signed-key"},
	}
	for _, ns := range []string{"shop", "payments", "registry-scans"} {
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			return err
		}
	}
	for _, w := range workloads {
		img := byName[w.image]
		digest := img.Ref.DigestStr()
		if w.platformDigest != "" {
			digest = w.platformDigest
		}
		if err := createWorkload(ctx, c, w, world.Repo(img.Name)+":"+img.Tag, world.Repo(img.Name)+"@"+digest); err != nil {
			return fmt.Errorf("workload %s/%s: %w", w.namespace, w.name, err)
		}
	}
	scan := &v1.RegistryScan{
		ObjectMeta: metav1.ObjectMeta{Name: "demo-registry", Namespace: "registry-scans"},
		Spec: v1.RegistryScanSpec{
			Repositories: []string{world.Repo("vulnerable")},
			TagFilter:    v1.TagFilter{Include: []string{`^\d+\.\d+$`}},
			Schedule:     "@every 1h",
			Insecure:     true,
		},
	}
	if err := c.Create(ctx, scan); err != nil {
		return err
	}

	metricsAddr, probeAddr := freeAddr(), freeAddr()
	logf("starting the manager: %s manager (log: %s)", bin, filepath.Join(dir, "manager.log"))
	logFile, err := os.Create(filepath.Join(dir, "manager.log"))
	if err != nil {
		return err
	}
	defer logFile.Close()
	mgr := exec.Command(bin, "manager",
		"--cache-dir", filepath.Join(dir, "cache"),
		"--db-archive", world.DBArchive,
		"--insecure-registry", world.Registry.Host(),
		"--metrics-bind-address", metricsAddr,
		"--health-probe-bind-address", probeAddr,
		"--concurrency", "2",
	)
	mgr.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	mgr.Stdout, mgr.Stderr = logFile, logFile
	if err := mgr.Start(); err != nil {
		return fmt.Errorf("starting the manager (run `make build` first): %w", err)
	}
	mgrDone := make(chan error, 1)
	go func() { mgrDone <- mgr.Wait() }()
	stopManager := func() {
		_ = mgr.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-mgrDone:
			_ = err // the manager was asked to stop; its exit status says nothing more
		case <-time.After(15 * time.Second):
			_ = mgr.Process.Kill()
			err := <-mgrDone
			_ = err
		}
	}

	// Expected reports: one per (namespace, platform digest).
	type key struct{ ns, digest string }
	want := map[key]demo.Image{}
	for _, w := range workloads {
		d := byName[w.image].Ref.DigestStr()
		if w.platformDigest != "" {
			d = w.platformDigest
		}
		want[key{w.namespace, d}] = byName[w.image]
	}
	want[key{"registry-scans", byName["vulnerable"].Ref.DigestStr()}] = byName["vulnerable"]

	logf("waiting for %d reports to be ready", len(want))
	deadline := time.Now().Add(6 * time.Minute)
	lastReady := -1
	var reports v1.ImageTrustReportList
	for {
		select {
		case err := <-mgrDone:
			tail(filepath.Join(dir, "manager.log"))
			return fmt.Errorf("the manager exited: %v", err)
		case <-ctx.Done():
			stopManager()
			return ctx.Err()
		case <-time.After(time.Second):
		}
		if err := c.List(ctx, &reports); err != nil {
			return err
		}
		ready := 0
		for _, r := range reports.Items {
			if _, ok := want[key{r.Namespace, r.Spec.Digest}]; ok && isReady(&r) {
				ready++
			}
		}
		if ready != lastReady {
			logf("  reports ready: %d/%d", ready, len(want))
			lastReady = ready
		}
		if ready == len(want) {
			break
		}
		if time.Now().After(deadline) {
			stopManager()
			tail(filepath.Join(dir, "manager.log"))
			return fmt.Errorf("only %d of %d reports ready after 6 minutes", ready, len(want))
		}
	}

	// Every demo policy names its repositories exactly, so the reports it applies to are the
	// expected reports of those repositories.
	wantMatched := map[string]int64{}
	for _, p := range policies {
		wantMatched[p.Name] = 0
		for _, img := range want {
			if slices.Contains(p.Spec.Images, world.Repo(img.Name)) {
				wantMatched[p.Name]++
			}
		}
	}
	logf("waiting for the policies' REPORTS column")
	matched, err := waitMatched(ctx, c, wantMatched, 30*time.Second)
	if err != nil {
		stopManager()
		return err
	}

	kubectl := filepath.Join(env.BinaryAssetsDirectory, "kubectl")
	show := func(title string, args ...string) {
		fmt.Printf("\n$ kubectl %s\n", strings.Join(args, " "))
		cmd := exec.Command(kubectl, append([]string{"--kubeconfig", kubeconfig}, args...)...)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			logf("%s: %v", title, err)
		}
	}
	show("reports", "get", "imagetrustreports", "-A")
	show("policies", "get", "imagetrustpolicies,registryscans", "-A")
	show("events", "get", "events", "-A", "--field-selector", "type=Warning", "-o", "custom-columns=NAMESPACE:.metadata.namespace,OBJECT:.involvedObject.kind,NAME:.involvedObject.name,REASON:.reason,MESSAGE:.message")
	printMetrics(metricsAddr)

	// Check every report against what the demo expects.
	fmt.Println()
	failures := 0
	sort.Slice(reports.Items, func(i, j int) bool {
		return reports.Items[i].Namespace+reports.Items[i].Name < reports.Items[j].Namespace+reports.Items[j].Name
	})
	for _, r := range reports.Items {
		exp, ok := want[key{r.Namespace, r.Spec.Digest}]
		if !ok {
			continue
		}
		got := fmt.Sprintf("%s/%s/%s", sigState(&r), sbomSource(&r), verdict(&r))
		expected := fmt.Sprintf("%s/%s/%s", exp.Signature, exp.SBOM, exp.Verdict)
		mark := "ok"
		if got != expected {
			mark = "UNEXPECTED (want " + expected + ")"
			failures++
		}
		logf("%-15s %-10s %-32s %s", exp.Name, r.Namespace, got, mark)
	}
	for _, p := range policies {
		mark := "ok"
		if matched[p.Name] != wantMatched[p.Name] {
			mark = fmt.Sprintf("UNEXPECTED (want %d)", wantMatched[p.Name])
			failures++
		}
		cell := fmt.Sprint(matched[p.Name])
		if matched[p.Name] < 0 {
			cell = "(empty)"
		}
		logf("policy %-18s REPORTS %-21s %s", p.Name, cell, mark)
	}

	if keep {
		fmt.Printf("\nDEMO_KEEP=1: everything stays up. Explore with:\n  export KUBECONFIG=%s\n  %s get itr -A\nManager log: %s\nPress Ctrl-C to stop.\n",
			kubeconfig, kubectl, filepath.Join(dir, "manager.log"))
		select {
		case <-ctx.Done():
		case err := <-mgrDone:
			logf("the manager exited: %v", err)
		}
		keep = false // clean up on the way out
	}
	logf("stopping the manager, the registry and the control plane")
	stopManager()
	if failures > 0 {
		return fmt.Errorf("%d reports differ from what the demo expects", failures)
	}
	logf("done: every demo image has the expected verdict")
	return nil
}

// waitMatched waits until every policy's status.matchedReports, read as kubectl's REPORTS
// column reads it (an absent field is an empty cell, not 0), is the wanted count, and returns
// the counts last seen (-1: absent); a timeout is not an error, the check that follows reports it.
func waitMatched(ctx context.Context, c client.Client, want map[string]int64, timeout time.Duration) (map[string]int64, error) {
	deadline := time.Now().Add(timeout)
	for {
		got := map[string]int64{}
		var list unstructured.UnstructuredList
		list.SetGroupVersionKind(v1.GroupVersion.WithKind("ImageTrustPolicyList"))
		if err := c.List(ctx, &list); err != nil {
			return nil, err
		}
		for _, p := range list.Items {
			if n, found, _ := unstructured.NestedInt64(p.Object, "status", "matchedReports"); found {
				got[p.GetName()] = n
			} else {
				got[p.GetName()] = -1
			}
		}
		if maps.Equal(got, want) || time.Now().After(deadline) {
			return got, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func isReady(r *v1.ImageTrustReport) bool {
	if r.Status.Policy == nil || r.Status.Vulnerabilities == nil || r.Status.Vulnerabilities.ScannedAt == nil {
		return false
	}
	for _, c := range r.Status.Conditions {
		if c.Type == v1.ConditionReady {
			return c.Status == metav1.ConditionTrue
		}
	}
	return false
}

func sigState(r *v1.ImageTrustReport) string {
	if r.Status.Signature == nil {
		return "-"
	}
	return string(r.Status.Signature.State)
}

func sbomSource(r *v1.ImageTrustReport) string {
	if r.Status.SBOM == nil {
		return "-"
	}
	return string(r.Status.SBOM.Source)
}

func verdict(r *v1.ImageTrustReport) string {
	if r.Status.Policy == nil {
		return "-"
	}
	return string(r.Status.Policy.Verdict)
}

func applyPolicies(ctx context.Context, c client.Client, w *demo.World) ([]*v1.ImageTrustPolicy, error) {
	host := w.Registry.Host()
	keyPolicy := &v1.ImageTrustPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "demo-release-key"},
		Spec: v1.ImageTrustPolicySpec{
			Images: []string{
				w.Repo("signed-key"), w.Repo("unsigned"), w.Repo("tampered"), w.Repo("multiarch"), w.Repo("vulnerable"),
			},
			RequireSignature: true,
			Authorities: []v1.Authority{{
				Name: "release", Key: &v1.KeyAuthority{Data: string(w.Key.PublicPEM)},
				// The demo has no Rekor: accept signatures without transparency-log proof.
				IgnoreTransparencyLog: true,
			}},
			AllowedRegistries: []string{host},
			Vulnerabilities:   &v1.VulnerabilityGate{FailOnSeverity: v1.SeverityCritical},
			Schedule:          "@every 1h",
		},
	}
	keylessPolicy := &v1.ImageTrustPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "demo-ci-keyless"},
		Spec: v1.ImageTrustPolicySpec{
			Images:           []string{w.Repo("signed-keyless")},
			RequireSignature: true,
			Authorities: []v1.Authority{{
				Name: "ci", IgnoreTransparencyLog: true,
				Keyless: &v1.KeylessAuthority{
					Identities: []v1.KeylessIdentity{{Issuer: demo.KeylessIssuer, Subject: demo.KeylessSubject}},
					Roots:      string(w.CA.RootPEM), IgnoreSCT: true,
				},
			}},
			Attestations: v1.AttestationRequirements{
				SBOM:           true,
				SLSAProvenance: &v1.SLSAProvenanceRequirement{AllowedBuilderIDs: []string{demo.BuilderID}},
			},
			Vulnerabilities: &v1.VulnerabilityGate{FailOnSeverity: v1.SeverityCritical},
			Schedule:        "@every 1h",
		},
	}
	policies := []*v1.ImageTrustPolicy{keyPolicy, keylessPolicy}
	for _, p := range policies {
		if err := c.Create(ctx, p); err != nil {
			return nil, fmt.Errorf("policy %s: %w", p.Name, err)
		}
	}
	return policies, nil
}

func platformDigest(img demo.Image, platform string, w *demo.World) (string, error) {
	idx, err := remoteIndex(img, w)
	if err != nil {
		return "", err
	}
	for _, m := range idx.Manifests {
		if m.Platform != nil && m.Platform.OS+"/"+m.Platform.Architecture == platform {
			return m.Digest.String(), nil
		}
	}
	return "", fmt.Errorf("%s has no %s image", img.Ref, platform)
}

// createWorkload creates the owner chain (Deployment → ReplicaSet → Pod, ...) and the pod with
// its status filled in as a kubelet would after pulling: no kubelet runs in the demo.
func createWorkload(ctx context.Context, c client.Client, w workload, specImage, imageID string) error {
	labels := map[string]string{"app": w.name}
	podSpec := corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: specImage}}}
	template := corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: podSpec}
	selector := &metav1.LabelSelector{MatchLabels: labels}
	var owner client.Object
	podName := w.name
	switch w.kind {
	case "Deployment":
		d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: w.name, Namespace: w.namespace},
			Spec: appsv1.DeploymentSpec{Selector: selector, Template: template}}
		if err := c.Create(ctx, d); err != nil {
			return err
		}
		rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: w.name + "-5d8f7c9b4", Namespace: w.namespace,
			OwnerReferences: []metav1.OwnerReference{ownerRef(d, "apps/v1", "Deployment")}},
			Spec: appsv1.ReplicaSetSpec{Selector: selector, Template: template}}
		if err := c.Create(ctx, rs); err != nil {
			return err
		}
		owner, podName = rs, rs.Name+"-x7k2p"
	case "StatefulSet":
		s := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: w.name, Namespace: w.namespace},
			Spec: appsv1.StatefulSetSpec{Selector: selector, Template: template}}
		if err := c.Create(ctx, s); err != nil {
			return err
		}
		owner, podName = s, w.name+"-0"
	case "DaemonSet":
		ds := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: w.name, Namespace: w.namespace},
			Spec: appsv1.DaemonSetSpec{Selector: selector, Template: template}}
		if err := c.Create(ctx, ds); err != nil {
			return err
		}
		owner, podName = ds, w.name+"-q9z8w"
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: podName, Namespace: w.namespace, Labels: labels}, Spec: podSpec}
	if owner != nil {
		gvk := map[string]string{"ReplicaSet": "apps/v1", "StatefulSet": "apps/v1", "DaemonSet": "apps/v1"}
		kind := map[string]string{"Deployment": "ReplicaSet", "StatefulSet": "StatefulSet", "DaemonSet": "DaemonSet"}[w.kind]
		pod.OwnerReferences = []metav1.OwnerReference{ownerRef(owner, gvk[kind], kind)}
	}
	if err := c.Create(ctx, pod); err != nil {
		return err
	}
	pod.Status = corev1.PodStatus{
		Phase: corev1.PodRunning,
		ContainerStatuses: []corev1.ContainerStatus{{
			Name: "app", Image: specImage, ImageID: imageID, Ready: true,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}},
		}},
	}
	return c.Status().Update(ctx, pod)
}

func ownerRef(o client.Object, apiVersion, kind string) metav1.OwnerReference {
	t := true
	return metav1.OwnerReference{APIVersion: apiVersion, Kind: kind, Name: o.GetName(), UID: o.GetUID(), Controller: &t}
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func printMetrics(addr string) {
	fmt.Printf("\n$ curl http://%s/metrics | grep imagetrust_ (a few lines)\n", addr)
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		logf("metrics: %v", err)
		return
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	shown := 0
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "imagetrust_") && !strings.Contains(line, "_bucket{") && shown < 25 {
			fmt.Println(line)
			shown++
		}
	}
}

func tail(path string) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	b, _ := io.ReadAll(f)
	lines := strings.Split(string(b), "\n")
	if len(lines) > 40 {
		lines = lines[len(lines)-40:]
	}
	fmt.Fprintln(os.Stderr, "--- last lines of the manager log ---")
	fmt.Fprintln(os.Stderr, strings.Join(lines, "\n"))
}
