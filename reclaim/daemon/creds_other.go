//go:build !linux && !darwin

package daemon

import (
	"errors"
	"net"
)

// peerCaller is not implemented here: without it no request can be
// trusted, so every self-service request is refused.
func peerCaller(*net.UnixConn) (caller, error) {
	return caller{}, errors.New("peer credentials are not supported on this system")
}

func mayAct(caller, int, uint64) error {
	return errors.New("self-service is not supported on this system")
}
