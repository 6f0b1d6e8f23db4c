//go:build linux

package daemon

import (
	"errors"

	"github.com/ptyreclaim/ptyreclaim/reclaim/act"
)

// guarded returns p with guard asked again under every freeze. A platform
// that cannot do that is refused: a self-service release must never run
// with the check made only before the freeze.
func guarded(p act.Actor, guard func(pid int) error) (act.Actor, error) {
	l, ok := p.(*act.Linux)
	if !ok {
		return nil, errors.New("this daemon's platform cannot check a process again under its freeze")
	}
	g := *l
	g.Guard = guard
	return &g, nil
}
