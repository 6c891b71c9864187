// Package mqtt connects a thing to the imb broker with access tokens from an sdk.TokenSource, over
// TCP, TLS or WebSocket, with MQTT 5 (github.com/eclipse/paho.golang) or MQTT 3.1.1
// (github.com/eclipse/paho.mqtt.golang).
//
// The token travels as the CONNECT password (user name = thing id) or, with MQTT 5 and
// Dialer.AuthMethod set, as Authentication Data of the method "OAUTH2-JWT". Before the token expires
// the connection pulls a fresh one from the token source and either re-authenticates in the session
// with an MQTT 5 AUTH packet (reason 0x19) or, on MQTT 3.1.1, reconnects with it. MQTT forbids AUTH
// after a CONNECT without an authentication method, so an MQTT 5 connection made with a password is
// not renewed: the broker ends it at expiry (Err matches ErrMaxConnectTime) and the caller dials again.
// A token bound to the thing's key (cnf.jwk or cnf.jkt; Dialer.Key, sdk.ThingTokenSource.Bind) is no
// bearer secret: with MQTT 5 the dialer then uses imb's method "IMB-POP" by default, answering the
// broker's nonce with a proof signed by the key at CONNECT and at every re-authentication (PoPAuth).
// Refusals surface as *ReasonError values that match ErrBadToken, ErrNotAuthorized,
// ErrServerUnavailable, ErrBadAuthMethod and ErrMaxConnectTime.
package mqtt

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"strings"
	"time"

	"imb/sdk"
)

// AuthMethodJWT is the MQTT 5 authentication method under which imb takes an access token.
const AuthMethodJWT = "OAUTH2-JWT"

const (
	defaultConnectTimeout = 10 * time.Second
	defaultKeepAlive      = 30
	defaultRenewBefore    = time.Minute
	minRetryWait          = 100 * time.Millisecond
)

// Dialer holds what every connection of a thing shares. Only Tokens is required.
type Dialer struct {
	// Tokens supplies the access token for CONNECT and every re-authentication.
	Tokens sdk.TokenSource
	// Username is sent with the password (usually the thing id); empty sends none.
	Username string
	// ClientID is the MQTT client id; imb binds it to the token's identity. Empty lets the broker
	// assign one (MQTT 5) or uses Username (3.1.1).
	ClientID string
	// AuthMethod, for MQTT 5, sends the token as Authentication Data under this method (normally
	// AuthMethodJWT) instead of as the password; it is what allows re-authentication in the session.
	AuthMethod string
	// TLSConfig is used for tls://, ssl://, mqtts:// and wss:// brokers.
	TLSConfig *tls.Config
	// Persistent asks for a session the broker keeps across reconnects (MQTT 3.1.1 clean session off;
	// MQTT 5 clean start off with a one-hour session expiry), so QoS 1 messages wait for the thing
	// while it reconnects.
	Persistent bool
	// KeepAlive in seconds (default 30).
	KeepAlive uint16
	// ConnectTimeout bounds dialing and the CONNECT/CONNACK exchange (default 10 s).
	ConnectTimeout time.Duration
	// RenewBefore caps how long before the token's expiry it is renewed (default one minute; a third
	// of the token's lifetime when that is shorter).
	RenewBefore time.Duration
	// Logger receives connection events; tokens appear only as fingerprints. Nil discards.
	Logger *slog.Logger
	// Key is the thing's key. An MQTT 5 connection whose token is bound to it (cnf.jwk or cnf.jkt) proves
	// the key with imb's IMB-POP method instead of sending the token as a bearer secret; that is the
	// default whenever the token is bound. Nil: the token source's BoundKey (sdk.ThingTokenSource.Bind),
	// whose opaque tokens (their cnf unreadable here) are proven too, since the source asked for them bound.
	Key *sdk.Key
	// PoPAudience is the broker's pop_audience, which IMB-POP proofs name (default: the token's first
	// aud, which is the broker's default too, else "imb").
	PoPAudience string
}

// boundKey is the key whose tokens this dialer proves: Key, else the token source's. asked says the token
// source asked for tokens bound to it (sdk.ThingTokenSource.Bind), so that an opaque token, whose cnf the SDK
// cannot read, is proven too.
func (d *Dialer) boundKey() (k *sdk.Key, asked bool) {
	var bound *sdk.Key
	if b, ok := d.Tokens.(interface{ BoundKey() *sdk.Key }); ok {
		bound = b.BoundKey()
	}
	k = d.Key
	if k == nil {
		k = bound
	}
	return k, k != nil && k == bound
}

// provesKey reports whether tok is to be proven with k: a JWT bound to k, or an opaque token the source asked to
// have bound to it.
func provesKey(tok *sdk.Token, k *sdk.Key, asked bool) bool {
	if k == nil {
		return false
	}
	if strings.Count(tok.AccessToken, ".") != 2 {
		return asked
	}
	return tok.BoundTo(k)
}

// popAudience is what a proof names as the broker.
func (d *Dialer) popAudience(tok *sdk.Token) string {
	if d.PoPAudience != "" {
		return d.PoPAudience
	}
	if aud := sdk.TokenAudience(tok); aud != "" {
		return aud
	}
	return "imb"
}

func (d *Dialer) logger() *slog.Logger {
	if d.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return d.Logger
}

func (d *Dialer) connectTimeout() time.Duration {
	if d.ConnectTimeout <= 0 {
		return defaultConnectTimeout
	}
	return d.ConnectTimeout
}

func (d *Dialer) keepAlive() uint16 {
	if d.KeepAlive == 0 {
		return defaultKeepAlive
	}
	return d.KeepAlive
}

func (d *Dialer) token(ctx context.Context) (*sdk.Token, error) {
	if d.Tokens == nil {
		return nil, errors.New("mqtt: Dialer.Tokens is nil")
	}
	ctx, cancel := context.WithTimeout(ctx, d.connectTimeout())
	defer cancel()
	tok, err := d.Tokens.Token(ctx)
	if err != nil {
		return nil, err
	}
	if tok == nil || tok.AccessToken == "" {
		return nil, errors.New("mqtt: token source returned no access token")
	}
	return tok, nil
}

// renewAt is when tok should be replaced: RenewBefore (or a third of its lifetime) before it
// expires. A token without expiry is never renewed (zero time).
func (d *Dialer) renewAt(tok *sdk.Token, issued time.Time) time.Time {
	if tok.Expiry.IsZero() {
		return time.Time{}
	}
	margin := d.RenewBefore
	if margin <= 0 {
		margin = defaultRenewBefore
	}
	if life := tok.Expiry.Sub(issued); life > 0 && life/3 < margin {
		margin = life / 3
	}
	return tok.Expiry.Add(-margin)
}

// freshToken pulls tokens until the source hands out a different one than old, waiting a little
// between tries (a source may consider old still fresh for a moment), at most until old expires.
func (d *Dialer) freshToken(ctx context.Context, old *sdk.Token) (*sdk.Token, error) {
	for {
		tok, err := d.token(ctx)
		if err == nil && tok.AccessToken != old.AccessToken {
			return tok, nil
		}
		wait := time.Until(old.Expiry) / 4
		if wait < minRetryWait {
			wait = minRetryWait
		}
		if !old.Expiry.IsZero() && time.Now().After(old.Expiry) {
			if err == nil {
				err = errors.New("mqtt: token source did not renew the token before it expired")
			}
			return nil, err
		}
		d.logger().DebugContext(ctx, "token not renewed yet", "token", sdk.Fingerprint(old.AccessToken), "err", err, "retry_in", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}
