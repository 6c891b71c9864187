package mqtt

import (
	"errors"
	"fmt"
)

// Errors to test for with errors.Is; a *ReasonError matches the one its reason code means.
var (
	// ErrBadToken: the broker refused the token (MQTT 5 0x86, 3.1.1 CONNACK 4).
	ErrBadToken = errors.New("mqtt: bad token")
	// ErrNotAuthorized: the token is valid but does not allow this (MQTT 5 0x87, 3.1.1 CONNACK 5).
	ErrNotAuthorized = errors.New("mqtt: not authorized")
	// ErrServerUnavailable: the broker cannot check tokens now (MQTT 5 0x88, 3.1.1 CONNACK 3).
	ErrServerUnavailable = errors.New("mqtt: server unavailable")
	// ErrBadAuthMethod: the broker does not accept the authentication method (MQTT 5 0x8C).
	ErrBadAuthMethod = errors.New("mqtt: bad authentication method")
	// ErrMaxConnectTime: the broker ended the session because the token expired (MQTT 5 0xA0).
	ErrMaxConnectTime = errors.New("mqtt: maximum connect time")
)

// MQTT reason codes the dialer interprets.
const (
	CodeSuccess        byte = 0x00
	CodeReAuthenticate byte = 0x19
	// CodeContinueAuthentication is an AUTH step of a multi-step method (IMB-POP's nonce and proof).
	CodeContinueAuthentication byte = 0x18
	CodeBadToken               byte = 0x86
	CodeNotAuthorized          byte = 0x87
	CodeServerUnavailable      byte = 0x88
	CodeBadAuthMethod          byte = 0x8C
	CodeMaxConnectTime         byte = 0xA0
)

// MQTT 3.1.1 CONNACK return codes.
const (
	v3ServerUnavailable   byte = 3
	v3BadUsernamePassword byte = 4
	v3NotAuthorized       byte = 5
)

// ReasonError is a refusal from the broker: a CONNACK, DISCONNECT or AUTH with a failure reason code.
type ReasonError struct {
	Packet  string // "CONNACK", "DISCONNECT"
	Version byte   // 5 or 4 (MQTT 3.1.1)
	Code    byte
	Reason  string // the broker's reason string, if it sent one
}

// Error describes the refusal.
func (e *ReasonError) Error() string {
	s := fmt.Sprintf("mqtt: %s reason 0x%02X", e.Packet, e.Code)
	if e.Reason != "" {
		s += ": " + e.Reason
	}
	return s
}

// Is matches the Err* values by reason code.
func (e *ReasonError) Is(target error) bool {
	if e.Version == 4 {
		switch target {
		case ErrBadToken:
			return e.Code == v3BadUsernamePassword
		case ErrNotAuthorized:
			return e.Code == v3NotAuthorized
		case ErrServerUnavailable:
			return e.Code == v3ServerUnavailable
		}
		return false
	}
	switch target {
	case ErrBadToken:
		return e.Code == CodeBadToken
	case ErrNotAuthorized:
		return e.Code == CodeNotAuthorized
	case ErrServerUnavailable:
		return e.Code == CodeServerUnavailable
	case ErrBadAuthMethod:
		return e.Code == CodeBadAuthMethod
	case ErrMaxConnectTime:
		return e.Code == CodeMaxConnectTime
	}
	return false
}
