package peer

import (
	"testing"
)

func TestParseCreds(t *testing.T) {
	status := "Name:\tsu\nUmask:\t0022\nUid:\t1001\t0\t0\t0\nGid:\t1001\t1001\t1001\t1001\n" +
		"CapInh:\t0000000000000000\nCapPrm:\t000001ffffffffff\nCapEff:\t000001ffffffffff\nCapBnd:\t000001ffffffffff\n"
	c, err := parseCreds([]byte(status))
	if err != nil {
		t.Fatal(err)
	}
	if c.uids != [4]int{1001, 0, 0, 0} || c.gids != [4]int{1001, 1001, 1001, 1001} || c.capPrm != 0x1ffffffffff || c.capEff != 0x1ffffffffff {
		t.Errorf("got %+v", c)
	}
	for name, bad := range map[string]string{
		"no CapEff":     "Uid:\t1\t1\t1\t1\nGid:\t1\t1\t1\t1\nCapPrm:\t0\n",
		"three uids":    "Uid:\t1\t1\t1\nGid:\t1\t1\t1\t1\nCapPrm:\t0\nCapEff:\t0\n",
		"negative uid":  "Uid:\t-1\t1\t1\t1\nGid:\t1\t1\t1\t1\nCapPrm:\t0\nCapEff:\t0\n",
		"caps not hex":  "Uid:\t1\t1\t1\t1\nGid:\t1\t1\t1\t1\nCapPrm:\tzz\nCapEff:\t0\n",
		"empty":         "",
		"uid too large": "Uid:\t4294967296\t1\t1\t1\nGid:\t1\t1\t1\t1\nCapPrm:\t0\nCapEff:\t0\n",
	} {
		if _, err := parseCreds([]byte(bad)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

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

func FuzzParseCreds(f *testing.F) {
	f.Add([]byte("Uid:\t1001\t0\t0\t0\nGid:\t1001\t1001\t1001\t1001\nCapPrm:\t0\nCapEff:\t0\n"))
	f.Add([]byte("Uid:\t1\nGid:\nCapPrm:\tffffffffffffffffff\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := parseCreds(b)
		if err != nil {
			return
		}
		for _, id := range append(c.uids[:], c.gids[:]...) {
			if id < 0 || id > 1<<32-1 {
				t.Fatalf("id %d out of range", id)
			}
		}
		_ = nsRoot(b)
	})
}
