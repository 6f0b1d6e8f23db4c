package cli

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ptyreclaim/ptyreclaim/policy"
	"github.com/ptyreclaim/ptyreclaim/reclaim/classify"
	"github.com/ptyreclaim/ptyreclaim/reclaim/pipeline"
)

// Exit codes of node-problem-detector's custom plugin protocol
// (pkg/custompluginmonitor/plugin: 0 OK, 1 NonOK, anything else Unknown).
const (
	CheckOK      = 0
	CheckProblem = 1
	CheckUnknown = 2
)

// CheckMaxLine is the longest line check prints: node-problem-detector
// cuts a plugin's output at max_output_length, 80 bytes by default, and the
// cut would otherwise fall wherever it falls.
const CheckMaxLine = 80

// CheckOptions are the flags of `ptyreclaim check`.
type CheckOptions struct {
	PolicyPath string
}

func newCheckCmd(env *Env) *cobra.Command {
	o := &CheckOptions{}
	cmd := &cobra.Command{
		Use:   "check",
		Short: "One-line health check for node-problem-detector (exit 0 OK, 1 problem, 2 unknown)",
		Long: `check scans the machine once and prints exactly one line of at most 80
bytes on stdout, in the contract of node-problem-detector's custom plugin
monitor: exit 0 when all is well, 1 when there is a problem, 2 when it cannot
tell. A problem is the PTY pool at or above the policy's pressure.warn share,
a process holding holders.warn_at PTYs or more, or a child stuck forever in
read(). It changes nothing.`,
		Example: `  sudo ptyreclaim check
  sudo ptyreclaim check --policy /etc/ptyreclaim/policy.yaml; echo "exit $?"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return RunCheck(cmd.Context(), env, o)
		},
	}
	cmd.Flags().StringVar(&o.PolicyPath, "policy", "", "policy file with the thresholds (default: the installed one, if any)")
	// The plugin protocol reads stdout only: a bad flag must still give
	// its one line there, and "unknown".
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		fmt.Fprintln(env.IO.Out, checkLine("unknown: "+err.Error()))
		return &ExitError{Code: CheckUnknown, Err: err}
	})
	return cmd
}

// RunCheck is `ptyreclaim check`. It always prints one line on stdout; the
// returned error carries the exit code.
func RunCheck(ctx context.Context, env *Env, o *CheckOptions) error {
	line, code := check(ctx, env, o)
	fmt.Fprintln(env.IO.Out, checkLine(line))
	if code == CheckOK {
		return nil
	}
	// The line on stdout is the message; stderr stays quiet.
	return &ExitError{Code: code, Err: errSilent}
}

func check(ctx context.Context, env *Env, o *CheckOptions) (string, int) {
	pol, err := loadPolicy(env, o.PolicyPath)
	if err != nil {
		return "unknown: " + err.Error(), CheckUnknown
	}
	scan, err := pipeline.Take(ctx, env.Source, pol, nil, env.Log)
	if err != nil {
		return "unknown: " + err.Error(), CheckUnknown
	}
	problems := checkProblems(pol, scan)
	if len(problems) > 0 {
		return strings.Join(problems, "; "), CheckProblem
	}
	if scan.Snap.Unreadable > 0 {
		// Unreadable processes may hold the PTYs we cannot see.
		return fmt.Sprintf("unknown: %d processes could not be read (run as root)", scan.Snap.Unreadable), CheckUnknown
	}
	pool := scan.Snap.Pool
	return fmt.Sprintf("OK: %d of %d PTYs in use (%d%%), no heavy holder, no stuck child",
		pool.InUse, pool.Limit, percent(pool.InUse, pool.Limit)), CheckOK
}

// checkProblems lists what is wrong, worst first: the pool, then the
// heaviest holders, then stuck children.
func checkProblems(pol *policy.Policy, scan *pipeline.Scan) []string {
	var out []string
	pool := scan.Snap.Pool
	if level := pol.Level(pool.InUse, pool.Limit); level != policy.LevelOK {
		out = append(out, fmt.Sprintf("PTY pool %d%% full (%d/%d, %s)", percent(pool.InUse, pool.Limit), pool.InUse, pool.Limit, level))
	}
	type heavy struct {
		pid, ptys int
		comm      string
	}
	var hs []heavy
	if pol.Holders.WarnAt > 0 {
		for _, p := range scan.Snap.Processes {
			if len(p.PTYFDs) < pol.Holders.WarnAt {
				continue
			}
			if n := p.HeldPTYs(); n >= pol.Holders.WarnAt {
				hs = append(hs, heavy{pid: p.PID, ptys: n, comm: p.Comm})
			}
		}
	}
	sort.Slice(hs, func(i, j int) bool { return hs[i].ptys > hs[j].ptys })
	for _, h := range hs {
		out = append(out, fmt.Sprintf("pid %d (%s) holds %d PTYs", h.pid, checkWord(h.comm), h.ptys))
	}
	stuck := 0
	for _, f := range scan.Findings {
		if f.Kind == classify.KindOrphan && f.Leak() {
			stuck++
		}
	}
	if stuck > 0 {
		out = append(out, plural(stuck, "stuck child", "stuck children"))
	}
	return out
}

// checkLine makes the one line safe for the Kubernetes API and short
// enough that node-problem-detector's cut never happens: printable ASCII
// only, at most CheckMaxLine bytes.
func checkLine(s string) string {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e {
			c = '?'
		}
		b = append(b, c)
	}
	if len(b) > CheckMaxLine {
		b = append(b[:CheckMaxLine-3], "..."...)
	}
	return string(b)
}

// checkWord keeps a process name to characters that need no quoting; comm
// is any 15 bytes its process chose.
func checkWord(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			b[i] = '?'
		}
	}
	return string(b)
}

func percent(n, of int) int {
	if of <= 0 {
		return 0
	}
	return n * 100 / of
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
