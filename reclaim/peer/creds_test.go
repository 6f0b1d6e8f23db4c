package peer

import (
	"testing"
)

func TestNSRoot(t *testing.T) {
	for m, want := range map[string]int{
		"         0          0 4294967295\n":                                   0,
		"         0       1000          1\n":                                   1000,
		"      1000       1000          1\n         0     100000      65536\n": 100000,
		"      1000       1000          1\n":                                   0, // 0 unmapped: the global root
		"":                                                                     0,
		"garbage\n":                                                            0,
	} {
		if got := nsRoot([]byte(m)); got != want {
			t.Errorf("%q: %d, want %d", m, got, want)
		}
	}
}

func FuzzNSRoot(f *testing.F) {
	f.Add([]byte("      1000       1000          1\n         0     100000      65536\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if got := nsRoot(b); got < 0 || got > 1<<32-1 {
			t.Fatalf("root %d out of range", got)
		}
	})
}
