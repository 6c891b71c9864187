// Package introspect turns the access token a thing presents into verified facts: subject, plain thing id, scopes,
// claims, expiry and proof-of-possession confirmation. It validates JWTs locally against the issuer's published keys
// (OIDC discovery, a JWKS URL or a JWKS file), asks an RFC 7662 introspection endpoint about any other token, and
// caches the outcome by SHA-256 of the token for the broker's hot path. It knows nothing of MQTT: its errors carry
// the reason code the broker should answer with, and that is all.
//
// JOSE libraries, one per job: the compact-JWS parse and the signature check are written here over crypto/ecdsa,
// crypto/rsa and crypto/ed25519, because validation runs on every CONNECT and must stay close to the cost of the
// bare signature check, and because every rule that stops a forged token (strict base64url, duplicate JSON members,
// no crit/jku/x5u/jwk/x5c, key chosen by kid only and fitted to alg) is then visible in one place. go-jose v4
// parses key sets (JWKS), where its key validation (EC points, RSA moduli, x5c chains) is worth having and speed
// does not matter. Tests sign tokens with go-jose, an implementation independent of the one under test.
package introspect

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Validator checks a token and returns what it proves. Errors are *Error values of kind ErrInvalidToken or
// ErrUnavailable.
type Validator interface {
	Validate(ctx context.Context, token string) (*Token, error)
}

// Readier reports whether a component can currently validate tokens (keys loaded and fresh, endpoint known). The
// broker's /readyz calls it; a nil error means ready.
type Readier interface {
	Ready(ctx context.Context) error
}

// Token is the verified content of an access token. A *Token returned by a validator or the cache is shared
// between callers (the cache hands the same pointer to every hit): treat it, its slices and its Claims map as
// read-only.
type Token struct {
	Subject string // sub as issued, e.g. "(usr!thing-1)"
	ThingID string // plain identity: the ClaimMap's claim, else subname, else the ID in "(usr!ID)" or "(age!ID)", else sub
	// Principal is who the token speaks for, whole. ThingID fills policy placeholders; it is not an identity, since
	// "(usr!X)", "(age!X)" and X of another issuer all have the ThingID X.
	Principal Principal
	ClientID  string // OAuth client: client_id, azp or cid; else the single aud value (AM puts the client there)
	Issuer    string
	ID        string // jti
	Audience  []string
	Scopes    []string       // by the ClaimMap (scope and scp by default), each a JSON array or a space-separated string
	Claims    map[string]any // every claim, JSON-decoded: string, float64, bool, []any, map[string]any, nil
	Expiry    time.Time      // zero only for an introspection answer without exp
	IssuedAt  time.Time
	NotBefore time.Time
	// Confirmation is the proof-of-possession binding (cnf, RFC 7800 / RFC 9449 / RFC 8705); nil when absent.
	Confirmation *Confirmation
	Method       string // MethodJWT or MethodIntrospection
}

// Principal names one identity of one issuer: the issuer, the kind of subject and the subject as issued. Two
// tokens speak for the same identity only when all three are equal; ownership of client ids and sessions is
// decided by it.
type Principal struct {
	Issuer string
	// Kind is "usr" or "age" for AM's compound subjects "(usr!X)" and "(age!X)", "client" for an introspection
	// answer without sub (the client itself), "" for any other sub.
	Kind    string
	Subject string // sub as issued; the client id when Kind is "client"
}

// String encodes the principal as a JSON array of its three parts: unambiguous whatever the parts hold, and never
// a plain thing id, so an owner recorded as a plain id can never be taken for a principal.
func (p Principal) String() string {
	b, _ := json.Marshal([3]string{p.Issuer, p.Kind, p.Subject}) // strings always marshal
	return string(b)
}

// PrincipalOfClaims derives the principal from a token's decoded claims, by the same rule validation uses (sub,
// else client_id). It serves records that kept the claims but not the principal.
func PrincipalOfClaims(claims map[string]any) (Principal, error) {
	sub, err := stringClaim(claims, "sub")
	if err != nil {
		return Principal{}, err
	}
	fromClient := false
	if sub == "" {
		if sub, err = stringClaim(claims, "client_id"); err != nil {
			return Principal{}, err
		}
		fromClient = true
	}
	if sub == "" {
		return Principal{}, invalid(ReasonSubMissing, nil)
	}
	iss, err := stringClaim(claims, "iss")
	if err != nil {
		return Principal{}, err
	}
	return principal(iss, sub, fromClient), nil
}

// principal builds the principal of a subject; fromClient marks a subject taken from client_id.
func principal(iss, sub string, fromClient bool) Principal {
	p := Principal{Issuer: iss, Subject: sub}
	switch {
	case fromClient:
		p.Kind = "client"
	case strings.HasPrefix(sub, "(usr!") && strings.HasSuffix(sub, ")"):
		p.Kind = "usr"
	case strings.HasPrefix(sub, "(age!") && strings.HasSuffix(sub, ")"):
		p.Kind = "age"
	}
	return p
}

// Methods that produced a Token.
const (
	MethodJWT           = "jwt"
	MethodIntrospection = "introspection"
)

// Confirmation is the cnf claim: the key the token is bound to.
type Confirmation struct {
	JKT     string          // RFC 9449 JWK SHA-256 thumbprint (DPoP)
	X5TS256 string          // RFC 8705 certificate SHA-256 thumbprint (mTLS), from "x5t#S256"
	JWK     json.RawMessage // RFC 7800 embedded public key, as sent
}

// Fingerprint identifies a token in logs without revealing it: the first 12 hex digits of its SHA-256.
func Fingerprint(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:6])
}

// tokenFromClaims builds a Token from decoded claims and checks the types of the claims it reads. Time checks
// (exp, nbf, iat) are the caller's, since JWT and introspection treat a missing exp differently.
func tokenFromClaims(claims map[string]any, method string, cm ClaimMap) (*Token, error) {
	t := &Token{Claims: claims, Method: method}
	var err error
	if t.Subject, err = stringClaim(claims, "sub"); err != nil {
		return nil, err
	}
	fromClient := false
	if t.Subject == "" && method == MethodIntrospection {
		// RFC 7662 makes sub optional, and providers omit it for client_credentials
		// tokens, whose principal is the client itself (RFC 9068 §2.2 puts the client
		// id in sub for the JWT form of the same token).
		if t.Subject, err = stringClaim(claims, "client_id"); err != nil {
			return nil, err
		}
		fromClient = true
	}
	if t.Subject == "" {
		return nil, invalid(ReasonSubMissing, nil)
	}
	if t.Issuer, err = stringClaim(claims, "iss"); err != nil {
		return nil, err
	}
	if t.ID, err = stringClaim(claims, "jti"); err != nil {
		return nil, err
	}
	if t.ThingID, err = cm.thingID(claims, t.Subject); err != nil {
		return nil, err
	}
	t.Principal = principal(t.Issuer, t.Subject, fromClient)
	if t.Audience, err = audience(claims); err != nil {
		return nil, err
	}
	if t.Scopes, err = cm.scopes(claims); err != nil {
		return nil, err
	}
	if t.ClientID, err = clientID(claims, t.Audience); err != nil {
		return nil, err
	}
	if t.Expiry, err = timeClaim(claims, "exp"); err != nil {
		return nil, err
	}
	if t.IssuedAt, err = timeClaim(claims, "iat"); err != nil {
		return nil, err
	}
	if t.NotBefore, err = timeClaim(claims, "nbf"); err != nil {
		return nil, err
	}
	if t.Confirmation, err = confirmation(claims); err != nil {
		return nil, err
	}
	return t, nil
}

// thingID normalises AM's compound universal ids: subname wins, else "(usr!ID)" or "(age!ID)" yields ID.
func thingID(sub, subname string) string {
	if subname != "" {
		return subname
	}
	for _, prefix := range []string{"(usr!", "(age!"} {
		if id, ok := strings.CutPrefix(sub, prefix); ok && strings.HasSuffix(id, ")") && len(id) > 1 {
			return id[:len(id)-1]
		}
	}
	return sub
}

// checkAccessToken is the one rule, for JWTs and introspection answers alike, by which a genuine token of another
// kind (an ID token, a refresh token) is not accepted as an access token. AM signs ID tokens with the same key,
// issuer and audience as access tokens and names the kind only in tokenName, which must then be "access_token".
// token_type (RFC 7662 §2.2; AM puts it in its JWTs too) must be an access token's type: "Bearer", "DPoP" (RFC
// 9449) or "access_token", in any letter case; "refresh_token" and anything else is refused. An absent (or null)
// token_type is accepted: RFC 7662 makes it optional and many providers omit it (AM always sends it).
func checkAccessToken(claims map[string]any) error {
	if name, ok := claims["tokenName"]; ok && name != "access_token" {
		return invalid(ReasonNotAccessToken, nil)
	}
	typ, err := stringClaim(claims, "token_type")
	if err != nil {
		return err
	}
	if v, present := claims["token_type"]; !present || v == nil {
		return nil
	}
	switch strings.ToLower(typ) {
	case "bearer", "dpop", "access_token":
		return nil
	}
	return invalid(ReasonNotAccessType, fmt.Errorf("token_type %q", truncate(typ, 32)))
}

// claimTypeError reports a claim of the wrong JSON type; the claim name is safe to show, its value is not needed.
func claimTypeError(name, want string) error {
	return invalid(ReasonClaimType, fmt.Errorf("claim %q: want %s", name, want))
}

// stringClaim returns a string claim, "" when absent.
func stringClaim(claims map[string]any, name string) (string, error) {
	v, ok := claims[name]
	if !ok || v == nil {
		return "", nil
	}
	s, ok := v.(string)
	if !ok {
		return "", claimTypeError(name, "a string")
	}
	return s, nil
}

// maxNumericDate bounds NumericDate claims to the year 9999 so the conversion to time.Time cannot overflow.
const maxNumericDate = 253402300799

// timeClaim reads a NumericDate (RFC 7519 §2): a JSON number of seconds, fractions allowed.
func timeClaim(claims map[string]any, name string) (time.Time, error) {
	v, ok := claims[name]
	if !ok || v == nil {
		return time.Time{}, nil
	}
	f, ok := v.(float64)
	if !ok || f < 0 || f > maxNumericDate {
		return time.Time{}, claimTypeError(name, "a NumericDate")
	}
	sec := int64(f)
	return time.Unix(sec, int64((f-float64(sec))*1e9)), nil
}

// audience accepts aud as a string or an array of strings (RFC 7519 §4.1.3).
func audience(claims map[string]any) ([]string, error) {
	return stringOrArray(claims, "aud", func(s string) []string { return []string{s} })
}

// stringOrArray reads a claim that is either a string (converted by fromString) or an array of strings.
func stringOrArray(claims map[string]any, name string, fromString func(string) []string) ([]string, error) {
	v, ok := claims[name]
	if !ok || v == nil {
		return nil, nil
	}
	return stringsOf(v, name, fromString)
}

// clientID takes the OAuth client from client_id (RFC 9068, RFC 7662), azp (OIDC) or cid (Okta); AM's tokens name
// the client only in aud, so a single audience value is the last resort.
func clientID(claims map[string]any, aud []string) (string, error) {
	for _, name := range []string{"client_id", "azp", "cid"} {
		s, err := stringClaim(claims, name)
		if err != nil || s != "" {
			return s, err
		}
	}
	if len(aud) == 1 {
		return aud[0], nil
	}
	return "", nil
}

// confirmation reads cnf; a cnf that is present but malformed is an error, since it would silently drop a binding.
func confirmation(claims map[string]any) (*Confirmation, error) {
	v, ok := claims["cnf"]
	if !ok || v == nil {
		return nil, nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, claimTypeError("cnf", "an object")
	}
	c := &Confirmation{}
	var err error
	if c.JKT, err = stringClaim(m, "jkt"); err != nil {
		return nil, err
	}
	if c.X5TS256, err = stringClaim(m, "x5t#S256"); err != nil {
		return nil, err
	}
	if jwk, ok := m["jwk"]; ok && jwk != nil {
		if _, isObject := jwk.(map[string]any); !isObject {
			return nil, claimTypeError("cnf.jwk", "an object")
		}
		raw, err := json.Marshal(jwk)
		if err != nil {
			return nil, invalid(ReasonClaimType, fmt.Errorf("claim cnf.jwk: %w", err))
		}
		c.JWK = raw
	}
	return c, nil
}
