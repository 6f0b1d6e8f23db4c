package procfs

import "testing"

func TestParseCreds(t *testing.T) {
	status := "Name:\tsu\nUmask:\t0022\nUid:\t1001\t0\t0\t0\nGid:\t1001\t1001\t1001\t1001\n" +
		"CapInh:\t0000000000000000\nCapPrm:\t000001ffffffffff\nCapEff:\t000001ffffffffff\nCapBnd:\t000001ffffffffff\n"
	c, err := ParseCreds([]byte(status))
	if err != nil {
		t.Fatal(err)
	}
	if c.UIDs != [4]int{1001, 0, 0, 0} || c.GIDs != [4]int{1001, 1001, 1001, 1001} || c.CapPrm != 0x1ffffffffff || c.CapEff != 0x1ffffffffff {
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
		if _, err := ParseCreds([]byte(bad)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func FuzzParseCreds(f *testing.F) {
	f.Add([]byte("Uid:\t1001\t0\t0\t0\nGid:\t1001\t1001\t1001\t1001\nCapPrm:\t0\nCapEff:\t0\n"))
	f.Add([]byte("Uid:\t1\nGid:\nCapPrm:\tffffffffffffffffff\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseCreds(b)
		if err != nil {
			return
		}
		for _, id := range append(c.UIDs[:], c.GIDs[:]...) {
			if id < 0 || id > 1<<32-1 {
				t.Fatalf("id %d out of range", id)
			}
		}
	})
}
