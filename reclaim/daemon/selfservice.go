package daemon

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"go.uber.org/zap"

	"github.com/ptyreclaim/ptyreclaim/policy"
	"github.com/ptyreclaim/ptyreclaim/reclaim/snapshot"
)

// Limits on self-service connections: a slow or hostile client must not
// hold the daemon.
const (
	requestTimeout = 5 * time.Second
	maxConnections = 16
)

// listen opens the self-service socket. Everyone may connect (mode 0666):
// who may do what is decided per request from the peer's uid.
func listen(path string) (*net.UnixListener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("socket %s: exists and is not a socket; refusing to replace it", path)
		}
		// A socket left by a daemon that died; we hold the lock, so no
		// other daemon is using it.
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("socket %s: %w", path, err)
		}
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		l.Close()
		return nil, fmt.Errorf("socket %s: %w", path, err)
	}
	return l, nil
}

// serve answers self-service requests until the listener is closed.
func (d *Daemon) serve(ctx context.Context, l *net.UnixListener) {
	slots := make(chan struct{}, maxConnections)
	for {
		c, err := l.AcceptUnix()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			d.log.Warn("self-service accept failed", zap.Error(err))
			time.Sleep(100 * time.Millisecond)
			continue
		}
		select {
		case slots <- struct{}{}:
			go func() {
				defer func() { <-slots }()
				d.handle(ctx, c)
			}()
		default:
			writeResponse(c, Response{Error: "the daemon is busy; try again"})
			c.Close()
		}
	}
}

// handle answers one connection: one request line, one response line.
func (d *Daemon) handle(ctx context.Context, c *net.UnixConn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(requestTimeout))
	uid, err := peerUID(c)
	if err != nil {
		writeResponse(c, Response{Error: "cannot tell who is asking: " + err.Error()})
		return
	}
	log := d.log.With(zap.Int("peer_uid", uid))
	line, err := bufio.NewReaderSize(c, maxRequest).ReadSlice('\n')
	if err != nil {
		log.Info("self-service: bad request", zap.Error(err))
		writeResponse(c, Response{Error: "bad request: one JSON line of at most 64 KiB expected", Usage: true})
		return
	}
	var req Request
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		log.Info("self-service: bad request", zap.Error(err))
		writeResponse(c, Response{Error: "bad request: " + err.Error(), Usage: true})
		return
	}
	// The injection itself may take a while; the deadline was for reading.
	_ = c.SetDeadline(time.Time{})
	resp := d.selfService(ctx, uid, req, log)
	_ = c.SetDeadline(time.Now().Add(requestTimeout))
	writeResponse(c, resp)
}

// selfService checks and runs one request from uid.
func (d *Daemon) selfService(ctx context.Context, uid int, req Request, log *zap.Logger) Response {
	if req.Op != "release" {
		return Response{Error: fmt.Sprintf("bad request: unknown op %q", req.Op), Usage: true}
	}
	pol := d.policy()
	if uid != 0 && !pol.SelfService {
		log.Info("self-service refused: off in the policy")
		return Response{Error: "self-service is off: the policy " + pol.Source + " does not set self_service: true"}
	}
	if req.Method != "" && req.Method != policy.MethodDevNull && req.Method != policy.MethodClose {
		return Response{Error: fmt.Sprintf("--method %q: want devnull or close", req.Method), Usage: true}
	}
	var minIdle *time.Duration
	if req.MinIdle != "" {
		v, err := time.ParseDuration(req.MinIdle)
		if err != nil || v < 0 {
			return Response{Error: fmt.Sprintf("--min-idle %q: not a duration of 0 or more", req.MinIdle), Usage: true}
		}
		minIdle = &v
	}
	if !req.All && len(req.PIDs) == 0 && len(req.Names) == 0 {
		return Response{Error: "name your processes with --pid or --name, or use --all", Usage: true}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	rep, err := d.release(ctx, releaseRequest{
		owner: uid, pids: req.PIDs, names: req.Names, all: req.All,
		orphans: req.Orphans, method: req.Method, minIdle: minIdle,
	}, log)
	if err != nil {
		var ue *usageError
		return Response{Error: err.Error(), Usage: errors.As(err, &ue)}
	}
	return Response{Report: &rep}
}

func writeResponse(c net.Conn, r Response) {
	b, _ := json.Marshal(r)
	_, _ = c.Write(append(b, '\n'))
}

// owns reports whether the process belongs to uid (root owns all).
func owns(uid int, p *snapshot.Process) bool { return uid == 0 || p.UID == uid }
