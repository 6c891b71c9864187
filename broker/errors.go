package broker

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
)

// ConfigError is an error in what the operator configured (a key's value, the
// policy, a certificate file): fixing the configuration fixes it, retrying does
// not. imb exits 2 for it and 1 for failures at run time.
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

// configErr wraps err as a ConfigError (nil stays nil).
func configErr(err error) error {
	if err == nil {
		return nil
	}
	var ce *ConfigError
	if errors.As(err, &ce) {
		return err
	}
	return &ConfigError{Err: err}
}

// ListenError is a listener address that cannot be bound: in use, not an
// address of this machine, or not an address at all. Key is its imb.yaml key
// (mqtt_addr, admin_addr, ...), so that the command line can name its flag.
type ListenError struct {
	Key  string
	Addr string
	Err  error
}

func (e *ListenError) Error() string { return fmt.Sprintf("%s %s: %s", e.Key, e.Addr, e.Reason()) }
func (e *ListenError) Unwrap() error { return e.Err }

// Reason is the cause without the address repeated: "address already in use".
func (e *ListenError) Reason() string {
	var se *os.SyscallError
	if errors.As(e.Err, &se) {
		return se.Err.Error()
	}
	var oe *net.OpError
	if errors.As(e.Err, &oe) && oe.Err != nil {
		return oe.Err.Error()
	}
	return e.Err.Error()
}

// InUse reports whether another process holds the address.
func (e *ListenError) InUse() bool { return errors.Is(e.Err, syscall.EADDRINUSE) }

// IsConfigError reports whether err comes from the configuration (exit code 2)
// rather than from a failure at run time (exit code 1).
func IsConfigError(err error) bool {
	var ce *ConfigError
	var le *ListenError
	return errors.As(err, &ce) || errors.As(err, &le)
}
