// Package daemon is `ptyreclaim daemon`: it scans every interval and acts
// as the policy says, reloads the policy on SIGHUP, serves self-service
// requests on a Unix socket and Prometheus metrics over HTTP, and tells
// systemd (or nobody) how it is doing.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/ptyreclaim/ptyreclaim/policy"
	"github.com/ptyreclaim/ptyreclaim/reclaim/act"
	"github.com/ptyreclaim/ptyreclaim/reclaim/pipeline"
	"github.com/ptyreclaim/ptyreclaim/reclaim/plan"
	"github.com/ptyreclaim/ptyreclaim/reclaim/snapshot"
)

// Config is what the daemon is started with.
type Config struct {
	// PolicyPath is the policy file; "" means the installed one, or the
	// built-in default when none is installed.
	PolicyPath  string
	Interval    time.Duration
	MetricsAddr string // "" for no metrics
	SocketPath  string // "" for no self-service socket
	// TextfileDir, when set, gets the metrics as a .prom file after every
	// cycle, for node_exporter's textfile collector.
	TextfileDir string
	LockPath    string
	Source      snapshot.Source
	// Platform returns what acts, for one snapshot.
	Platform func(*snapshot.Snapshot) act.Platform
	// RaiseLimit, when set, raises the system PTY limit under critical
	// pressure (macOS kern.tty.ptmx_max) and returns the new limit.
	RaiseLimit func(pool snapshot.Pool) (int, error)
	Log        *zap.Logger
}

// Daemon is one running daemon.
type Daemon struct {
	cfg     Config
	log     *zap.Logger
	self    int
	pol     atomic.Pointer[policy.Policy]
	metrics *metrics
	// mu keeps one release at a time: the cycle and self-service requests
	// must never freeze or signal the same process at once.
	mu sync.Mutex
}

// New checks the configuration and loads the policy; a broken policy file
// keeps the daemon from starting.
func New(cfg Config) (*Daemon, error) {
	if cfg.Interval <= 0 {
		return nil, fmt.Errorf("--interval %s: must be more than 0", cfg.Interval)
	}
	if cfg.TextfileDir != "" {
		if err := checkTextfileDir(cfg.TextfileDir); err != nil {
			return nil, err
		}
	}
	d := &Daemon{cfg: cfg, log: cfg.Log, self: os.Getpid(), metrics: newMetrics()}
	pol, err := d.loadPolicy()
	if err != nil {
		return nil, err
	}
	d.pol.Store(pol)
	return d, nil
}

func (d *Daemon) loadPolicy() (*policy.Policy, error) {
	if d.cfg.PolicyPath != "" {
		return policy.Load(d.cfg.PolicyPath)
	}
	return policy.LoadDefault()
}

func (d *Daemon) policy() *policy.Policy { return d.pol.Load() }

// Reload reads the policy again. A broken file keeps the old policy.
func (d *Daemon) Reload() {
	pol, err := d.loadPolicy()
	if err != nil {
		d.metrics.reloads.WithLabelValues("error").Inc()
		d.log.Error("policy reload failed; keeping the policy in force", zap.Error(err),
			zap.String("policy", d.policy().Source))
		return
	}
	d.pol.Store(pol)
	d.metrics.reloads.WithLabelValues("ok").Inc()
	d.log.Info("policy reloaded", zap.String("policy", pol.Source), zap.Int("allow", len(pol.Allow)),
		zap.Int("deny", len(pol.Deny)), zap.Bool("self_service", pol.SelfService))
}

// Run serves until ctx ends. A cycle in progress finishes first: the
// executor never stops in the middle of a process.
func (d *Daemon) Run(ctx context.Context, reload <-chan os.Signal) error {
	lock, err := lockFile(d.cfg.LockPath)
	if err != nil {
		return err
	}
	defer lock.Close()

	var wg sync.WaitGroup
	defer wg.Wait()
	if d.cfg.MetricsAddr != "" {
		srv, err := d.serveMetrics(&wg)
		if err != nil {
			return err
		}
		defer srv.Close()
	}
	if d.cfg.SocketPath != "" {
		l, err := listen(d.cfg.SocketPath)
		if err != nil {
			return err
		}
		defer os.Remove(d.cfg.SocketPath)
		defer l.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.serve(ctx, l)
		}()
	}

	pol := d.policy()
	d.log.Info("daemon started", zap.String("policy", pol.Source), zap.Duration("interval", d.cfg.Interval),
		zap.String("metrics", d.cfg.MetricsAddr), zap.String("socket", d.cfg.SocketPath),
		zap.Bool("self_service", pol.SelfService))
	d.cycle(ctx)
	if err := Notify("READY=1\nSTATUS=watching the PTY pool"); err != nil {
		d.log.Warn("systemd notification failed", zap.Error(err))
	}
	tick := time.NewTicker(d.cfg.Interval)
	defer tick.Stop()
	var watchdog <-chan time.Time
	if iv := WatchdogInterval(); iv > 0 {
		t := time.NewTicker(iv)
		defer t.Stop()
		watchdog = t.C
	}
	for {
		select {
		case <-ctx.Done():
			_ = Notify("STOPPING=1")
			d.log.Info("daemon stopping")
			return nil
		case <-reload:
			d.Reload()
		case <-watchdog:
			_ = Notify("WATCHDOG=1")
		case <-tick.C:
			d.cycle(ctx)
		}
	}
}

func (d *Daemon) serveMetrics(wg *sync.WaitGroup) (*http.Server, error) {
	l, err := net.Listen("tcp", d.cfg.MetricsAddr)
	if err != nil {
		return nil, fmt.Errorf("--metrics %s: %w", d.cfg.MetricsAddr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(d.metrics.reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.log.Error("metrics server stopped", zap.Error(err))
		}
	}()
	return srv, nil
}

// cycle is one scan and whatever the policy says to do about it.
func (d *Daemon) cycle(ctx context.Context) {
	d.mu.Lock()
	defer d.mu.Unlock()
	start := time.Now()
	rep, err := d.release(ctx, releaseRequest{owner: -1, orphans: true}, d.log)
	d.writeTextfile()
	if err != nil {
		d.log.Error("cycle failed", zap.Error(err))
		return
	}
	d.log.Info("cycle", zap.Int("pool_in_use", rep.PoolBefore.InUse), zap.Int("pool_after", rep.PoolAfter.InUse),
		zap.Int("pool_limit", rep.PoolBefore.Limit),
		zap.Int("done", pipeline.CountResult(rep.Actions, act.Done)),
		zap.Int("failed", pipeline.CountResult(rep.Actions, act.Failed)),
		zap.Int("skipped", pipeline.CountResult(rep.Actions, act.Skipped)),
		zap.Duration("took", time.Since(start)))
}

// releaseRequest is what one release acts on.
type releaseRequest struct {
	// owner is the uid a self-service request comes from (0 for root), or
	// -1 for the daemon's own cycle, where the policy's allow rules decide.
	owner   int
	pids    []int
	names   []string
	all     bool
	orphans bool
	method  string
	minIdle *time.Duration
}

// usageError is a problem with a request, not with the daemon.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// release is the one flow for the cycle and for self-service: scan,
// classify, plan, act. The caller holds d.mu.
func (d *Daemon) release(ctx context.Context, r releaseRequest, log *zap.Logger) (pipeline.Report, error) {
	pol := d.policy()
	scan, err := pipeline.Take(ctx, d.cfg.Source, pol, r.minIdle, log)
	if err != nil {
		return pipeline.Report{}, err
	}
	d.metrics.observeScan(scan.Snap, scan.Findings, scan.Took.Seconds())
	if r.owner < 0 {
		d.warnPressure(pol, scan)
	}
	popts := plan.Options{Policy: pol, Self: d.self, Orphans: r.orphans, Method: r.method, Context: scan.Findings}
	if r.owner >= 0 {
		if popts.Select, err = selection(scan.Snap, r); err != nil {
			return pipeline.Report{}, err
		}
	}
	items := plan.Plan(pipeline.Filter(scan.Findings, popts.Select, false), popts)
	for i := range items {
		it := &items[i]
		// Belt and braces: a self-service request never acts on another
		// user's process, whatever the selection let through.
		if r.owner > 0 && it.Verdict != plan.Skip && !owns(r.owner, it.Process) {
			it.Verdict, it.Method, it.Reason = plan.Skip, "", "not your process"
		}
		if it.Verdict == plan.Skip {
			log.Debug("decision", zap.String("kind", string(it.Kind)), zap.Int("pid", it.Process.PID),
				zap.Int("fd", it.FD), zap.String("verdict", string(it.Verdict)), zap.String("reason", it.Reason))
		}
	}
	exec := &act.Executor{Log: log, Platform: d.cfg.Platform(scan.Snap)}
	rep, err := pipeline.Release(ctx, d.cfg.Source, exec, scan.Snap.Pool, items)
	d.metrics.observeActions(rep.Actions)
	return rep, err
}

// selection turns a self-service request into the processes it may touch:
// the caller's own, by pid or name, or all of them.
func selection(snap *snapshot.Snapshot, r releaseRequest) (func(*snapshot.Process) bool, error) {
	for _, pid := range r.pids {
		p := snap.Process(pid)
		if p == nil {
			return nil, &usageError{fmt.Sprintf("--pid %d: no such process (it may have exited)", pid)}
		}
		if !owns(r.owner, p) {
			return nil, &usageError{fmt.Sprintf("--pid %d: not your process", pid)}
		}
	}
	named := pipeline.Select(r.pids, r.names)
	for _, n := range r.names {
		byName := pipeline.Select(nil, []string{n})
		found := false
		for _, p := range snap.Processes {
			if owns(r.owner, p) && byName(p) {
				found = true
				break
			}
		}
		if !found {
			return nil, &usageError{fmt.Sprintf("--name %s: no process of yours has that name", n)}
		}
	}
	return func(p *snapshot.Process) bool {
		// An orphan's parent arrives as a bare pid: look it up.
		if real := snap.Process(p.PID); real != nil {
			p = real
		}
		return owns(r.owner, p) && (r.all || named(p))
	}, nil
}

// warnPressure logs when the pool or one holder crosses a threshold.
func (d *Daemon) warnPressure(pol *policy.Policy, scan *pipeline.Scan) {
	pool := scan.Snap.Pool
	level := pol.Level(pool.InUse, pool.Limit)
	if level != policy.LevelOK {
		d.log.Warn("PTY pool under pressure", zap.String("level", level), zap.Int("in_use", pool.InUse),
			zap.Int("limit", pool.Limit), zap.Duration("min_idle", pol.MinIdle(pool.InUse, pool.Limit)))
	}
	// A running helper needs no PTY: it can raise the limit when even
	// `sudo sysctl` no longer can.
	if level == policy.LevelCritical && d.cfg.RaiseLimit != nil {
		if to, err := d.cfg.RaiseLimit(pool); err != nil {
			d.log.Warn("raising the PTY limit failed", zap.Int("limit", pool.Limit), zap.Error(err))
		} else if to > pool.Limit {
			d.log.Warn("raised the PTY limit", zap.Int("from", pool.Limit), zap.Int("to", to))
		}
	}
	if pol.Holders.WarnAt <= 0 {
		return
	}
	for _, p := range scan.Snap.Processes {
		if len(p.PTYFDs) < pol.Holders.WarnAt {
			continue
		}
		if n := plan.HeldPTYs(p); n >= pol.Holders.WarnAt {
			d.log.Warn("process holds many PTYs", zap.Int("pid", p.PID), zap.String("comm", p.Comm),
				zap.String("exe", p.Exe), zap.Int("ptys", n), zap.Int("warn_at", pol.Holders.WarnAt))
		}
	}
}
