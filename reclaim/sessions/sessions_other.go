//go:build !linux && !darwin

package sessions

import "errors"

// LoggedIn is not implemented here.
func LoggedIn() ([]User, error) {
	return nil, errors.New("login records are not read on this platform")
}
