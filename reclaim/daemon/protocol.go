package daemon

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/ptyreclaim/ptyreclaim/policy"
	"github.com/ptyreclaim/ptyreclaim/reclaim/report"
)

// Request is one self-service request: a JSON object on one line. It names
// what to release the way `release` does; the daemon adds who is asking
// from the socket's peer credentials, never from the request.
type Request struct {
	Op      string        `json:"op"` // "release"
	PIDs    []int         `json:"pids,omitempty"`
	Names   []string      `json:"names,omitempty"`
	All     bool          `json:"all,omitempty"`
	Orphans bool          `json:"orphans,omitempty"`
	Method  policy.Method `json:"method,omitempty"`
	MinIdle string        `json:"min_idle,omitempty"` // Go duration; "" = the policy's
}

// Response is the daemon's answer: the release report, or an error line.
type Response struct {
	Error string `json:"error,omitempty"`
	// Usage is true when the error is about the request (exit code 2).
	Usage bool `json:"usage,omitempty"`
	// Busy is true when the daemon refused the connection for its limits
	// (per user, in all): trying again later may work.
	Busy   bool            `json:"busy,omitempty"`
	Report *report.Release `json:"report,omitempty"`
}

// maxRequest bounds what the daemon reads from one connection.
const maxRequest = 64 << 10

// Ask sends a request to the daemon at socket and returns its answer.
func Ask(socket string, req Request, timeout time.Duration) (Response, error) {
	conn, err := net.DialTimeout("unix", socket, timeout)
	if err != nil {
		return Response{}, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(timeout))
	b, err := json.Marshal(req)
	if err != nil {
		return Response{}, err
	}
	// A daemon that refuses a connection (busy) answers and hangs up
	// without reading: the write may then fail, yet its answer is there
	// to read, and it says more than "broken pipe".
	_, werr := conn.Write(append(b, '\n'))
	line, rerr := bufio.NewReaderSize(conn, 64<<10).ReadBytes('\n')
	if len(line) == 0 {
		if werr != nil {
			return Response{}, fmt.Errorf("sending to %s: %w", socket, werr)
		}
		if rerr != nil && !errors.Is(rerr, bufio.ErrBufferFull) {
			return Response{}, fmt.Errorf("reading the answer from %s: %w", socket, rerr)
		}
	}
	var resp Response
	if err := json.Unmarshal(line, &resp); err != nil {
		return Response{}, fmt.Errorf("the daemon at %s answered something unreadable: %w", socket, err)
	}
	return resp, nil
}
