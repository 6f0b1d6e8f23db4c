package act

import "fmt"

// PTMXMaxCeiling is the highest kern.tty.ptmx_max xnu accepts: PTY slave
// names are ttys%03d (PTMX_MAX_HARD in bsd/kern/tty_ptmx.c).
const PTMXMaxCeiling = 999

// NextPTMXMax returns the kern.tty.ptmx_max to raise the limit to while the
// pool is under pressure: a quarter of headroom over the PTYs in use,
// never below the current limit and never above 999:
//
//	min(999, max(limit, inUse*5/4))
//
// It returns limit itself when no raise is due, and also when the limit is
// unknown (≤ 0) or already above 999: a helper must never lower it. The
// caller raises only when the result is above limit.
func NextPTMXMax(inUse, limit int) int {
	if limit <= 0 || limit >= PTMXMaxCeiling {
		return limit
	}
	return min(PTMXMaxCeiling, max(limit, max(inUse, 0)*5/4))
}

// checkPTMXRaise decides whether writing to over the current limit is a
// raise: write is false when to is not above current (nothing to do; the
// kernel would accept a lower value, which must never be written), and an
// error when to is out of the range xnu accepts.
func checkPTMXRaise(current, to int) (bool, error) {
	if to < 1 || to > PTMXMaxCeiling {
		return false, fmt.Errorf("kern.tty.ptmx_max %d: xnu accepts 1 to %d", to, PTMXMaxCeiling)
	}
	return to > current, nil
}
