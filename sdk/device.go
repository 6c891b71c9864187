package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Device grant polling intervals (RFC 8628 §3.5).
const (
	defaultPollInterval = 5 * time.Second
	slowDownStep        = 5 * time.Second
)

// DeviceAuthorization is AM's answer to get_user_code (RFC 8628 §3.2): the code a user enters at
// VerificationURI to let the thing act for them.
type DeviceAuthorization struct {
	DeviceCode              string `json:"device_code"`
	UserCode                string `json:"user_code"`
	VerificationURI         string `json:"verification_uri"`
	VerificationURIComplete string `json:"verification_uri_complete,omitempty"`
	ExpiresIn               int64  `json:"expires_in"`
	Interval                int64  `json:"interval,omitempty"`
	// Expiry is when the device code ends, computed when the reply arrived.
	Expiry time.Time `json:"-"`
}

// UserCode starts the device authorization grant for a user (get_user_code). Without scopes the
// client's default scopes apply; unknown scopes fail with ErrInvalidScope.
func (t *Thing) UserCode(ctx context.Context, scopes ...string) (*DeviceAuthorization, error) {
	body := map[string]any{}
	if len(scopes) > 0 {
		body["scope"] = scopes
	}
	reply, err := t.call(ctx, "get_user_code", http.MethodPost, t.client.ep.thingsAction("get_user_code"), body)
	if err != nil {
		return nil, err
	}
	var da DeviceAuthorization
	if err := json.Unmarshal(reply, &da); err != nil {
		return nil, fmt.Errorf("get_user_code: decode: %w", err)
	}
	if da.DeviceCode == "" || da.UserCode == "" {
		return nil, errors.New("get_user_code: reply without device_code or user_code")
	}
	if da.ExpiresIn > 0 {
		da.Expiry = time.Now().Add(time.Duration(da.ExpiresIn) * time.Second)
	}
	return &da, nil
}

// PollUserToken asks once for the user's token (get_user_token). While the user has not answered the
// error matches ErrAuthorizationPending (or ErrSlowDown); a denial matches ErrAuthorizationDeclined and
// an expired code ErrExpiredToken.
func (t *Thing) PollUserToken(ctx context.Context, da *DeviceAuthorization) (*Token, error) {
	reply, err := t.call(ctx, "get_user_token", http.MethodPost, t.client.ep.thingsAction("get_user_token"),
		map[string]any{"device_code": da.DeviceCode})
	if err != nil {
		return nil, err
	}
	return parseToken("get_user_token", reply, time.Now())
}

// UserToken polls for the user's token until the user answers, the device code expires or ctx ends.
// It waits Interval seconds (default 5) between polls and 5 s longer after each slow_down.
func (t *Thing) UserToken(ctx context.Context, da *DeviceAuthorization) (*Token, error) {
	interval := time.Duration(da.Interval) * time.Second
	if interval <= 0 {
		interval = defaultPollInterval
	}
	if !da.Expiry.IsZero() {
		var cancel context.CancelFunc
		// Past the expiry by a margin, so that AM itself can say expired_token.
		ctx, cancel = context.WithDeadline(ctx, da.Expiry.Add(2*interval+5*time.Second))
		defer cancel()
	}
	timer := time.NewTimer(interval)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("get_user_token: %w", ctx.Err())
		case <-timer.C:
		}
		tok, err := t.PollUserToken(ctx, da)
		switch {
		case err == nil:
			return tok, nil
		case errors.Is(err, ErrSlowDown):
			interval += slowDownStep
		case !errors.Is(err, ErrAuthorizationPending):
			return nil, err
		}
		timer.Reset(interval)
	}
}
