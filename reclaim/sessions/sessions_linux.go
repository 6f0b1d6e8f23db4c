//go:build linux

package sessions

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
)

// LoggedIn reads /run/utmp and systemd-logind's sessions. Records whose
// login process is gone are stale (a crash left them) and skipped. Missing
// files mean no one logged in that way (containers often have neither).
func LoggedIn() ([]User, error) {
	var out []User
	data, err := os.ReadFile("/run/utmp")
	switch {
	case err == nil:
		out = append(out, parseUtmp(data, glibcUtmp)...)
	case !errors.Is(err, fs.ErrNotExist):
		return nil, err
	}
	files, err := filepath.Glob("/run/systemd/sessions/*")
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		if filepath.Ext(f) == ".ref" {
			continue // a FIFO logind keeps open per session
		}
		b, err := os.ReadFile(f)
		if err != nil {
			continue // ended meanwhile
		}
		if u, ok := parseLogindSession(string(b)); ok {
			out = append(out, u)
		}
	}
	live := out[:0]
	for _, u := range out {
		if u.PID > 0 {
			if _, err := os.Stat("/proc/" + strconv.Itoa(u.PID)); err != nil {
				continue
			}
		}
		live = append(live, u)
	}
	resolve(live)
	return live, nil
}
