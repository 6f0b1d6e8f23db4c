package act

import (
	"fmt"
	"strings"

	"github.com/ptyreclaim/ptyreclaim/policy"
	"github.com/ptyreclaim/ptyreclaim/reclaim/inspector"
	"github.com/ptyreclaim/ptyreclaim/reclaim/plan"
	"github.com/ptyreclaim/ptyreclaim/reclaim/snapshot"
)

// inspectorActions turns what the inspector route did into one action per
// item, in order. An fd is done only when it is seen gone from outside.
func inspectorActions(items []plan.Item, rep inspector.Report, routeErr error) []Action {
	byFD := map[int]inspector.FDResult{}
	for _, o := range rep.Outcomes {
		byFD[o.FD] = o
	}
	tail := ""
	if rep.StillOpen {
		tail = "; the inspector is still open on 127.0.0.1:9229 (it closes when the program ends)"
		if len(rep.Notes) > 0 {
			tail = "; " + strings.Join(rep.Notes, "; ")
		}
	}
	out := make([]Action, 0, len(items))
	for _, it := range items {
		o, ok := byFD[it.FD]
		var a Action
		switch {
		case !ok && routeErr != nil:
			a = NewAction(it, Failed, "inspector route: "+routeErr.Error())
		case !ok:
			a = NewAction(it, Failed, "the inspector route reported nothing for this fd")
		case o.How == "failed":
			a = NewAction(it, Failed, "inside the program: "+o.Error)
		case !o.Verified:
			a = NewAction(it, Failed, fmt.Sprintf("the program says it %s the fd, but it is still open", o.How))
		case o.How == "destroyed":
			a = NewAction(it, Done, fmt.Sprintf("its %s was destroyed inside the program, as on a real hang-up (the program's own close handlers run)", o.Owner))
		default:
			a = NewAction(it, Done, "no handle of the program owned it: closed inside the program")
		}
		a.Method = policy.MethodInspector
		a.Reason += tail
		out = append(out, a)
	}
	return out
}

// watched lists the items' fds something in the holder watches (epoll,
// kqueue), each with the holder's other PTY fds that same(fd, other) says
// are the same open file (nil same: none known). The inspector closes a
// watched fd bare only when a net.Socket owns one of those.
func watched(p *snapshot.Process, items []plan.Item, same func(fd, other int) bool) map[int][]int {
	out := map[int][]int{}
	for _, it := range items {
		if !it.Watched {
			continue
		}
		others := []int{}
		for _, f := range p.PTYFDs {
			if f.FD != it.FD && f.PTY == it.PTY && f.Side == it.Side && same != nil && same(it.FD, f.FD) {
				others = append(others, f.FD)
			}
		}
		out[it.FD] = others
	}
	return out
}
