package introspect

import (
	"context"
	"errors"
)

// autoValidator validates JWTs of the configured issuer locally and sends every other token to introspection.
type autoValidator struct {
	jwt *JWTValidator
	in  *Introspector
}

// NewAuto combines the two strategies: a token that parses as a compact JWS is validated locally (and a failure
// there, a foreign iss included, is final: it never falls through to introspection); every other token is
// introspected, encrypted tokens (a five-part JWE, such as AM's client-based tokens with tokenEncryptionEnabled,
// which only AM can decrypt) among them. The one JWT that goes to introspection is an HMAC-signed one of the configured issuer when no
// shared secret is configured: AM signs client-based tokens with HS256 and the realm's secret when told to, and
// only AM can verify those. Either argument may be nil; with only jwt, tokens it cannot
// validate are invalid. The result also implements Readier.
func NewAuto(jwt *JWTValidator, in *Introspector) Validator {
	return &autoValidator{jwt: jwt, in: in}
}

// Validate routes the token.
func (a *autoValidator) Validate(ctx context.Context, token string) (*Token, error) {
	if a.jwt != nil {
		jws, err := parseCompact(token, a.jwt.maxToken, a.jwt.maxHeader)
		if err == nil && a.in != nil && a.jwt.onlyIssuerVerifies(jws) {
			return a.in.Validate(ctx, token)
		}
		if err == nil {
			// A JWT names its issuer: one that is not configured is refused here, not
			// sent to introspection, where every forged or foreign JWT would cost a
			// request with the broker's credentials.
			return a.jwt.validateParsed(ctx, jws)
		} else if a.in == nil {
			return nil, err
		}
	}
	if a.in == nil {
		return nil, invalid(ReasonNoValidator, nil)
	}
	return a.in.Validate(ctx, token)
}

// Ready requires every configured strategy to be ready.
func (a *autoValidator) Ready(ctx context.Context) error {
	var errs []error
	if a.jwt != nil {
		errs = append(errs, a.jwt.Ready(ctx))
	}
	if a.in != nil {
		errs = append(errs, a.in.Ready(ctx))
	}
	return errors.Join(errs...)
}
