package daemon

import (
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ptyreclaim/ptyreclaim/policy"
	"github.com/ptyreclaim/ptyreclaim/reclaim/act"
	"github.com/ptyreclaim/ptyreclaim/reclaim/classify"
	"github.com/ptyreclaim/ptyreclaim/reclaim/snapshot"
)

// metrics are the daemon's Prometheus series, on a registry of its own (no
// global state).
type metrics struct {
	reg          *prometheus.Registry
	poolInUse    prometheus.Gauge
	poolLimit    prometheus.Gauge
	holderPTYs   *prometheus.GaugeVec
	holderLeaked *prometheus.GaugeVec
	stuck        prometheus.Gauge
	actions      *prometheus.CounterVec
	scan         prometheus.Histogram
	reloads      *prometheus.CounterVec
	panics       *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		poolInUse: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ptyreclaim_pool_in_use", Help: "PTYs in use on the machine.",
		}),
		poolLimit: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ptyreclaim_pool_limit", Help: "The system's PTY limit.",
		}),
		holderPTYs: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ptyreclaim_holder_ptys", Help: "PTYs held per process (last scan).",
		}, []string{"pid", "comm"}),
		holderLeaked: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ptyreclaim_holder_leaked_ptys", Help: "Leaked PTYs held per process (last scan).",
		}, []string{"pid", "comm"}),
		stuck: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ptyreclaim_stuck_children", Help: "Children stuck forever in read() (last scan).",
		}),
		actions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ptyreclaim_actions_total", Help: "Actions by kind (pty, orphan) and result (reclaimed, killed, failed, skipped).",
		}, []string{"kind", "result"}),
		scan: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "ptyreclaim_scan_duration_seconds", Help: "How long one snapshot of the machine took.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12),
		}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ptyreclaim_policy_reloads_total", Help: "Policy reloads by result (ok, error).",
		}, []string{"result"}),
		panics: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ptyreclaim_panics_total", Help: "Panics recovered, by where (cycle, request); the daemon kept serving.",
		}, []string{"where"}),
	}
	m.reg.MustRegister(m.poolInUse, m.poolLimit, m.holderPTYs, m.holderLeaked, m.stuck, m.actions, m.scan, m.reloads, m.panics)
	return m
}

// observeScan records the pool and the per-holder counts of one scan.
func (m *metrics) observeScan(s *snapshot.Snapshot, findings []classify.Finding, seconds float64) {
	m.scan.Observe(seconds)
	m.poolInUse.Set(float64(s.Pool.InUse))
	m.poolLimit.Set(float64(s.Pool.Limit))
	stuck := 0
	for _, f := range findings {
		if f.Kind == classify.KindOrphan && f.Leak() {
			stuck++
		}
	}
	m.stuck.Set(float64(stuck))
	// Processes come and go: only the last scan's holders are series.
	m.holderPTYs.Reset()
	m.holderLeaked.Reset()
	for _, h := range classify.Holdings(findings) {
		labels := prometheus.Labels{"pid": strconv.Itoa(h.Process.PID), "comm": labelValue(h.Process.Comm)}
		m.holderPTYs.With(labels).Set(float64(h.PTYs))
		m.holderLeaked.With(labels).Set(float64(h.Leaked))
	}
}

// observeActions counts what a release did.
func (m *metrics) observeActions(actions []act.Action) {
	for _, a := range actions {
		result := a.Result
		if a.Result == act.Done {
			result = "reclaimed"
			if a.Method == policy.MethodKill || a.Method == policy.MethodKillHolder {
				result = "killed"
			}
		}
		m.actions.WithLabelValues(a.Kind, result).Inc()
	}
}

// labelValue makes a label value the Prometheus client accepts: it panics
// on invalid UTF-8, and comm is whatever bytes a process chose (or a name
// the kernel cut mid-character at 15 bytes).
func labelValue(s string) string { return strings.ToValidUTF8(s, "\uFFFD") }
