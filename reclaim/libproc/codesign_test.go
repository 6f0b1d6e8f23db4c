package libproc

import "testing"

// Flag values checked against xnu osfmk/kern/cs_blobs.h:
//
//	#define CS_GET_TASK_ALLOW  0x00000004
//	#define CS_HARD            0x00000100
//	#define CS_KILL            0x00000200
//	#define CS_RUNTIME         0x00010000
//	#define CS_PLATFORM_BINARY 0x04000000
func TestCodeSignFlagValues(t *testing.T) {
	if CSGetTaskAllow != 0x4 || CSHard != 0x100 || CSKill != 0x200 || CSRuntime != 0x10000 || CSPlatformBinary != 0x04000000 {
		t.Error("code signing flag values drifted from cs_blobs.h")
	}
}

func TestDecideInPlace(t *testing.T) {
	cases := []struct {
		name   string
		flags  uint32
		root   bool
		ok     bool
		reason string
	}{
		{"notarized hardened app (Claude.app, VS Code, iTerm2)", CSValid | CSSigned | CSHard | CSKill | CSRuntime, true, false, reasonHardened},
		{"hardened with get-task-allow (debug build)", CSValid | CSSigned | CSRuntime | CSGetTaskAllow, true, true, reasonGetTask},
		{"node, python, adhoc CLI tools", CSValid | CSSigned | 0x2, true, true, reasonNotHardened},
		{"unsigned", 0, true, true, reasonNotHardened},
		{"Apple platform binary", CSValid | CSSigned | CSPlatformBinary | CSHard | CSKill, true, false, reasonPlatform},
		{"not root", CSValid, false, false, reasonNotRoot},
	}
	for _, c := range cases {
		ok, reason := DecideInPlace(c.flags, c.root)
		if ok != c.ok || reason != c.reason {
			t.Errorf("%s: got (%v, %q), want (%v, %q)", c.name, ok, reason, c.ok, c.reason)
		}
	}
}
