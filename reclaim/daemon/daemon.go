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
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/ptyreclaim/ptyreclaim/policy"
	"github.com/ptyreclaim/ptyreclaim/reclaim/act"
	"github.com/ptyreclaim/ptyreclaim/reclaim/peer"
	"github.com/ptyreclaim/ptyreclaim/reclaim/pipeline"
	"github.com/ptyreclaim/ptyreclaim/reclaim/plan"
	"github.com/ptyreclaim/ptyreclaim/reclaim/platform"
	"github.com/ptyreclaim/ptyreclaim/reclaim/report"
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
	// Platform is what acts, raises the PTY limit under critical pressure
	// (macOS kern.tty.ptmx_max) and says who is asking on the socket.
	Platform *platform.Platform
	Log      *zap.Logger
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
	// scans lets self-service requests that wait at the same time share
	// one scan.
	scans scanShare
}

// New checks the configuration and loads the policy; a broken policy file
// keeps the daemon from starting.
func New(cfg Config) (*Daemon, error) {
	if cfg.Interval <= 0 {
		return nil, fmt.Errorf("--interval %s: must be more than 0", cfg.Interval)
	}
	if cfg.Platform == nil || cfg.Source == nil {
		return nil, errors.New("daemon: no platform to act through")
	}
	if cfg.TextfileDir != "" {
		if err := checkTextfileDir(cfg.TextfileDir); err != nil {
			return nil, err
		}
	}
	d := &Daemon{cfg: cfg, log: cfg.Log, self: os.Getpid(), metrics: newMetrics(),
		scans: scanShare{next: map[string]*sharedScan{}}}
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
	return policy.LoadInstalled(d.cfg.Platform.Paths.Policy)
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

// Run serves until ctx ends. A cycle in progress, and every self-service
// request being served, finish first: the executor never stops in the
// middle of a process, and Run returns only after the last one.
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
			// RELOADING=1 then READY=1 around the reload: systemd shows the
			// unit "reloading" meanwhile, and from v253 `systemctl reload`
			// waits for the READY=1 (it needs MONOTONIC_USEC for that).
			_ = Notify("RELOADING=1\nMONOTONIC_USEC=" + strconv.FormatInt(monotonicUsec(), 10))
			d.Reload()
			_ = Notify("READY=1\nSTATUS=watching the PTY pool")
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

// cycle is one scan and whatever the policy says to do about it. A panic
// ends the cycle, not the daemon.
func (d *Daemon) cycle(ctx context.Context) {
	defer d.recoverPanic("cycle", d.log)
	d.mu.Lock()
	defer d.mu.Unlock()
	start := time.Now()
	scan, err := pipeline.Take(ctx, d.cfg.Source, d.policy(), nil, d.log)
	if err != nil {
		d.log.Error("cycle failed", zap.Error(err))
		return
	}
	d.metrics.observeScan(scan.Snap, scan.Findings, scan.Took.Seconds())
	rep, err := d.release(ctx, releaseRequest{orphans: true}, scan, d.log)
	d.writeTextfile()
	if err != nil {
		d.log.Error("cycle failed", zap.Error(err))
		return
	}
	// Each action has its own record; a cycle that did nothing is only
	// worth a line at debug level.
	done, failed := rep.Count(act.Done), rep.Count(act.Failed)
	level := zap.DebugLevel
	if done+failed > 0 {
		level = zap.InfoLevel
	}
	d.log.Log(level, "cycle", zap.Int("pool_in_use", rep.PoolBefore.InUse), zap.Int("pool_after", rep.PoolAfter.InUse),
		zap.Int("pool_limit", rep.PoolBefore.Limit), zap.Int("done", done), zap.Int("failed", failed),
		zap.Int("skipped", rep.Count(act.Skipped)),
		zap.Duration("took", time.Since(start)))
}

// recoverPanic, deferred at the top of a cycle or a request, turns a panic
// into a logged, counted error: no input from any user may end the daemon.
func (d *Daemon) recoverPanic(where string, log *zap.Logger) {
	if r := recover(); r != nil {
		d.metrics.panics.WithLabelValues(where).Inc()
		log.Error("panic recovered; the daemon keeps serving", zap.String("where", where),
			zap.String("panic", fmt.Sprint(r)), zap.Stack("stack"))
	}
}

// releaseRequest is what one release acts on.
type releaseRequest struct {
	// caller is who sent a self-service request; nil for the daemon's own
	// cycle, where the policy's allow rules decide.
	caller  *peer.Caller
	pids    []int
	names   []string
	all     bool
	orphans bool
	method  policy.Method
}

// release is the one flow for the cycle and for self-service: a request
// for the pipeline, with the self-service checks between plan and act.
// The caller holds d.mu.
func (d *Daemon) release(ctx context.Context, r releaseRequest, scan *pipeline.Scan, log *zap.Logger) (report.Release, error) {
	pol := d.policy()
	if r.caller == nil {
		d.warnPressure(pol, scan)
	}
	req := pipeline.Request{Policy: pol, Self: d.self, Orphans: r.orphans, Method: r.method, Probes: d.cfg.Platform.Probes}
	if cl := r.caller; cl != nil {
		req.Target = targetOf(r)
		if !cl.Root {
			req.Before = func(items []plan.Item, actor act.Actor) (act.Actor, error) {
				return d.checkCaller(*cl, scan.Snap, items, actor, log)
			}
		}
	}
	res, err := pipeline.Run(ctx, d.cfg.Source, d.cfg.Platform.NewActor(scan.Snap), scan, req, log)
	if err != nil {
		return report.Release{}, err
	}
	for _, it := range res.Items {
		if it.Verdict == plan.Skip {
			log.Debug("decision", zap.String("kind", string(it.Kind)), zap.Int("pid", it.Process.PID),
				zap.Int("fd", it.FD), zap.String("verdict", string(it.Verdict)), zap.String("reason", it.Reason))
		}
	}
	rep := res.Report
	d.metrics.observeActions(rep.Actions)
	if r.caller != nil && !r.caller.Root {
		redact(rep.Actions, scan.Snap, r.caller.UID)
	}
	return rep, nil
}

// targetOf is what a self-service request may touch: the caller's own
// processes, by pid or name, or all of them.
func targetOf(r releaseRequest) pipeline.Target {
	return pipeline.Target{PIDs: r.pids, Names: r.names, All: r.all,
		Owner: func(p *snapshot.Process) bool { return owns(r.caller, p) }}
}

// checkCaller applies the self-service rule before the freeze: each item
// the caller could not act on herself (mayAct) is skipped, with one
// refusal record per process. It returns the platform that asks the same
// again under each freeze.
func (d *Daemon) checkCaller(cl peer.Caller, snap *snapshot.Snapshot, items []plan.Item, actor act.Actor, log *zap.Logger) (act.Actor, error) {
	refused := map[int]error{}
	for i := range items {
		it := &items[i]
		if it.Verdict == plan.Skip {
			continue
		}
		pid := it.Process.PID
		err, seen := refused[pid]
		if !seen {
			if !owns(&cl, it.Process) {
				err = errors.New("not your process")
			} else {
				err = d.cfg.Platform.MayAct(cl, pid, it.Process.StartTime)
			}
			refused[pid] = err
			if err != nil {
				log.Info("self-service refused", zap.Int("pid", pid), zap.Uint64("start_time", it.Process.StartTime),
					zap.Int("uid", it.Process.UID), zap.String("reason", err.Error()))
			}
		}
		if err != nil {
			it.Verdict, it.Method, it.Reason = plan.Skip, "", "refused: "+err.Error()
		}
	}
	return d.cfg.Platform.Guard(actor, func(pid int) error {
		p := snap.Process(pid)
		if p == nil {
			return fmt.Errorf("pid %d was not in the scan", pid)
		}
		if err := d.cfg.Platform.MayAct(cl, pid, p.StartTime); err != nil {
			log.Info("self-service refused under the freeze", zap.Int("pid", pid), zap.String("reason", err.Error()))
			return fmt.Errorf("refused under the freeze: %w", err)
		}
		return nil
	})
}

// redact replaces each reason that names a process of another user (by
// its pid, often with its comm) with one that does not: a self-service
// caller learns nothing about other users' processes.
func redact(actions []act.Action, snap *snapshot.Snapshot, uid int) {
	for i := range actions {
		if namesOthers(actions[i].Reason, snap, uid) {
			actions[i].Reason = "not released: the reason concerns a process of another user"
		}
	}
}

// namesOthers reports whether s contains, as a whole number, the pid of a
// process in snap that does not belong to uid. A number that only looks
// like one (an fd, an index) costs at worst a vaguer reason.
func namesOthers(s string, snap *snapshot.Snapshot, uid int) bool {
	for i := 0; i < len(s); {
		if s[i] < '0' || s[i] > '9' {
			i++
			continue
		}
		j := i
		for j < len(s) && s[j] >= '0' && s[j] <= '9' {
			j++
		}
		if n, err := strconv.Atoi(s[i:j]); err == nil {
			if p := snap.Process(n); p != nil && p.UID != uid {
				return true
			}
		}
		i = j
	}
	return false
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
	if level == policy.LevelCritical && d.cfg.Platform.RaiseLimit != nil {
		if to, err := d.cfg.Platform.RaiseLimit(pool); err != nil {
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
		if n := p.HeldPTYs(); n >= pol.Holders.WarnAt {
			d.log.Warn("process holds many PTYs", zap.Int("pid", p.PID), zap.String("comm", p.Comm),
				zap.String("exe", p.Exe), zap.Int("ptys", n), zap.Int("warn_at", pol.Holders.WarnAt))
		}
	}
}
