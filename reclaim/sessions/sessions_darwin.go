//go:build darwin

package sessions

import (
	"errors"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"
)

// LoggedIn reads /var/run/utmpx, where loginwindow, sshd and terminal
// logins record themselves. Records whose process is gone are stale.
func LoggedIn() ([]User, error) {
	data, err := os.ReadFile("/var/run/utmpx")
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var live []User
	for _, u := range parseUtmp(data, darwinUtmpx) {
		if u.PID > 0 && errors.Is(unix.Kill(u.PID, 0), unix.ESRCH) {
			continue
		}
		live = append(live, u)
	}
	resolve(live)
	return live, nil
}
