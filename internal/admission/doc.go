// Package admission decides at admission time, from the verdicts imagetrust already keeps in
// ImageTrustReports, whether a Pod or a workload may run its images. It never verifies anything
// itself: a decision reads the manager's informer cache (reports, policies, namespaces), so it
// takes milliseconds and works on every replica, leader or not.
//
// One core serves three front doors:
//
//   - a ValidatingWebhookConfiguration (Pods, Deployments, StatefulSets, DaemonSets,
//     ReplicaSets, Jobs, CronJobs) on controller-runtime's webhook server;
//   - an ImagePolicyWebhook backend (imagepolicy.k8s.io/v1alpha1 ImageReview) for clusters that
//     configure the API server's admission-control file;
//   - a Gatekeeper external-data provider (externaldata.gatekeeper.sh ProviderRequest /
//     ProviderResponse) on its own mTLS listener.
//
// The core is a gather step (Gatherer: cache reads, policy matching with scanner/policy.Applies,
// tag resolution) followed by the pure Decide(Input) Decision. Digests nobody assessed yet are
// handed to an Assessor so a retry has an answer.
package admission
