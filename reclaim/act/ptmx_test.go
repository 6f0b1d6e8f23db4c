package act

import "testing"

func TestNextPTMXMax(t *testing.T) {
	cases := []struct {
		name         string
		inUse, limit int
		want         int
	}{
		{"calm pool: no raise", 100, 511, 511},
		{"at 80%: a quarter over use is the limit", 408, 511, 511},
		{"near full: a quarter of headroom", 500, 511, 625},
		{"full", 511, 511, 638},
		{"capped at 999", 900, 900, 999},
		{"never lowers", 10, 800, 800},
		{"already at the ceiling", 999, 999, 999},
		{"unknown limit: leave it", 500, 0, 0},
		{"limit above what xnu allows today: leave it", 1500, 1200, 1200},
		{"nonsense use", -5, 511, 511},
	}
	for _, c := range cases {
		if got := NextPTMXMax(c.inUse, c.limit); got != c.want {
			t.Errorf("%s: NextPTMXMax(%d, %d) = %d, want %d", c.name, c.inUse, c.limit, got, c.want)
		}
	}
}

func TestCheckPTMXRaise(t *testing.T) {
	cases := []struct {
		current, to int
		write, err  bool
	}{
		{511, 638, true, false},
		{511, 511, false, false},
		{638, 511, false, false}, // xnu would lower it: never written
		{511, 1000, false, true},
		{511, 0, false, true},
	}
	for _, c := range cases {
		write, err := checkPTMXRaise(c.current, c.to)
		if write != c.write || (err != nil) != c.err {
			t.Errorf("checkPTMXRaise(%d, %d) = %v, %v", c.current, c.to, write, err)
		}
	}
}
