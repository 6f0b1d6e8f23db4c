package platform

import (
	"sync"

	"github.com/ptyreclaim/ptyreclaim/reclaim/inspector"
	"github.com/ptyreclaim/ptyreclaim/reclaim/plan"
	"github.com/ptyreclaim/ptyreclaim/reclaim/sessions"
	"github.com/ptyreclaim/ptyreclaim/reclaim/snapshot"
)

// RuntimeProbes lets a plan ask this machine about the inspector route:
// whether a holder is Node or Electron and may be signalled (the prober,
// which keeps fuse answers across plans), and who else is logged in (read
// once per plan, and only when asked).
func RuntimeProbes(prober *inspector.Prober) func(o *plan.Options) {
	return func(o *plan.Options) {
		o.Inspector = func(p *snapshot.Process) plan.InspectorCheck {
			ok, why := prober.Check(p.PID, p.StartTime)
			return plan.InspectorCheck{OK: ok, Why: why}
		}
		var once sync.Once
		var logged []sessions.User
		var err error
		o.OtherUsers = func(uid int) string {
			once.Do(func() { logged, err = sessions.LoggedIn() })
			if err != nil {
				// Doubt refuses the route.
				return "unknown: the login records are unreadable (" + err.Error() + ")"
			}
			return sessions.Others(logged, uid)
		}
	}
}
