package controllers

import (
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/imagetrust/imagetrust/scanner"
)

// The collectors live on controller-runtime's registry, served by the manager's metrics
// endpoint. Cardinality is bounded: verdicts, signature states, severities, DB schemas and
// (registry host, status code) pairs — never one series per image or CVE.
var (
	imagesByVerdict = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "imagetrust_images", Help: "ImageTrustReports by policy verdict.",
	}, []string{"verdict"})
	imagesBySignature = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "imagetrust_images_by_signature", Help: "ImageTrustReports by signature state.",
	}, []string{"state"})
	vulnerabilities = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "imagetrust_vulnerabilities", Help: "Vulnerability findings by severity, summed over the distinct image digests in use.",
	}, []string{"severity"})
	scanDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "imagetrust_scan_duration_seconds", Help: "Time to obtain an SBOM and match it against the vulnerability DB.",
		Buckets: prometheus.ExponentialBuckets(0.005, 3, 10),
	})
	verifyDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "imagetrust_verify_duration_seconds", Help: "Time to verify an image's signatures, attestations and base image.",
		Buckets: prometheus.ExponentialBuckets(0.005, 3, 10),
	})
	queueDepth = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "imagetrust_queue_depth", Help: "Image digests waiting in the work queue.",
	})
	vulndbAge = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "imagetrust_vulndb_age_seconds", Help: "Age of the loaded vulnerability DB (time since it was built); -1 when none is loaded.",
	})
	vulndbInfo = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "imagetrust_vulndb_info", Help: "The loaded vulnerability DB (value 1), labelled with its schema version.",
	}, []string{"schema"})
	registryRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "imagetrust_registry_requests_total", Help: "Requests sent to container registries, by registry host and HTTP status code (0: no response).",
	}, []string{"registry", "code"})

	registerOnce sync.Once
)

func registerMetrics() {
	registerOnce.Do(func() {
		metrics.Registry.MustRegister(imagesByVerdict, imagesBySignature, vulnerabilities, scanDuration,
			verifyDuration, queueDepth, vulndbAge, vulndbInfo, registryRequests)
	})
}

// ObserveRegistryRequest is the registry client's Observe hook.
func ObserveRegistryRequest(host, _ string, code int, _ time.Duration) {
	registryRequests.WithLabelValues(host, strconv.Itoa(code)).Inc()
}

// engineMetrics keeps what the gauges are aggregated from, so each report write adjusts them
// without a full recount.
type engineMetrics struct {
	queueDepth     prometheus.Gauge
	scanDuration   prometheus.Observer
	verifyDuration prometheus.Observer

	mu        sync.Mutex
	verdicts  map[reportKey]string
	sigStates map[reportKey]string
	summaries map[string]scanner.Summary // by digest
	refs      map[string]int             // reports per digest
}

func newEngineMetrics() *engineMetrics {
	registerMetrics()
	return &engineMetrics{
		queueDepth: queueDepth, scanDuration: scanDuration, verifyDuration: verifyDuration,
		verdicts: map[reportKey]string{}, sigStates: map[reportKey]string{},
		summaries: map[string]scanner.Summary{}, refs: map[string]int{},
	}
}

func (m *engineMetrics) setReport(k reportKey, verdict, sig string, sum *scanner.Summary) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if old, ok := m.verdicts[k]; ok {
		imagesByVerdict.WithLabelValues(old).Dec()
		imagesBySignature.WithLabelValues(m.sigStates[k]).Dec()
	} else {
		m.refs[k.Digest]++
	}
	m.verdicts[k], m.sigStates[k] = verdict, sig
	imagesByVerdict.WithLabelValues(verdict).Inc()
	imagesBySignature.WithLabelValues(sig).Inc()
	old, had := m.summaries[k.Digest]
	if had {
		addSummary(old, -1)
		delete(m.summaries, k.Digest)
	}
	if sum != nil {
		m.summaries[k.Digest] = *sum
		addSummary(*sum, 1)
	}
}

func (m *engineMetrics) deleteReport(k reportKey) {
	m.mu.Lock()
	defer m.mu.Unlock()
	old, ok := m.verdicts[k]
	if !ok {
		return
	}
	imagesByVerdict.WithLabelValues(old).Dec()
	imagesBySignature.WithLabelValues(m.sigStates[k]).Dec()
	delete(m.verdicts, k)
	delete(m.sigStates, k)
	m.refs[k.Digest]--
	if m.refs[k.Digest] <= 0 {
		delete(m.refs, k.Digest)
		if s, ok := m.summaries[k.Digest]; ok {
			addSummary(s, -1)
			delete(m.summaries, k.Digest)
		}
	}
}

func addSummary(s scanner.Summary, sign float64) {
	for _, sev := range scanner.Severities() {
		vulnerabilities.WithLabelValues(sev).Add(sign * float64(s.Count(sev)))
	}
}

// setDBMetrics publishes the DB's age and schema.
func setDBMetrics(st scanner.DBStatus) {
	vulndbInfo.Reset()
	if !st.Loaded() {
		vulndbAge.Set(-1)
		return
	}
	vulndbAge.Set(st.Age.Seconds())
	vulndbInfo.WithLabelValues(st.SchemaVersion).Set(1)
}
