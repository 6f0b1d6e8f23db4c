package daemon

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"go.uber.org/zap"

	"github.com/ptyreclaim/ptyreclaim/reclaim/pipeline"
)

// TextfileName is the file the daemon keeps in --textfile DIR. The
// textfile collector of node_exporter reads only files ending in .prom.
const TextfileName = "ptyreclaim.prom"

// WriteScanMetrics writes the daemon's metrics for one scan in the
// Prometheus text format: what `status --prometheus` prints. Counters of
// actions and reloads belong to a running daemon and are absent.
func WriteScanMetrics(w io.Writer, scan *pipeline.Scan) error {
	m := newMetrics()
	m.observeScan(scan.Snap, scan.Findings, scan.Took.Seconds())
	return writeText(w, m.reg)
}

func writeText(w io.Writer, g prometheus.Gatherer) error {
	mfs, err := g.Gather()
	if err != nil {
		return err
	}
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(w, mf); err != nil {
			return err
		}
	}
	return nil
}

// checkTextfileDir makes sure --textfile names a directory we can write
// into, so that a typo stops the daemon at start and not silently later.
func checkTextfileDir(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("--textfile %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("--textfile %s: not a directory", dir)
	}
	return nil
}

// writeTextfile replaces DIR/ptyreclaim.prom atomically: the library
// writes a temporary file in the same directory (its name does not end in
// .prom, so the collector never reads it half written) and renames it over
// the old one, so a scrape sees the old file or the new one, never a mix.
func (d *Daemon) writeTextfile() {
	if d.cfg.TextfileDir == "" {
		return
	}
	path := filepath.Join(d.cfg.TextfileDir, TextfileName)
	if err := prometheus.WriteToTextfile(path, d.metrics.reg); err != nil {
		d.log.Warn("writing the metrics textfile failed", zap.String("path", path), zap.Error(err))
	}
}
