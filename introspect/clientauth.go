package introspect

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// More client authentication methods at the introspection endpoint.
const (
	// AuthPrivateKeyJWT sends a client assertion signed with the broker's private key (RFC 7523 §2.2, OIDC Core
	// §9): no shared secret leaves the broker. AM, Keycloak, Okta and node-oidc-provider support it.
	AuthPrivateKeyJWT = "private_key_jwt"
	// AuthTLSClientAuth authenticates with the broker's TLS client certificate (RFC 8705 §2.1); client_id goes in
	// the form.
	AuthTLSClientAuth = "tls_client_auth"
	// AuthBearer sends a static bearer token in the Authorization header (RFC 7662 §2.1 allows it; Glewlwyd's way).
	AuthBearer = "bearer"
	// AuthNone sends no credentials (an endpoint on a private network, such as Ory Hydra's admin port); client_id
	// goes in the form when set.
	AuthNone = "none"
)

// clientAssertionType is the client_assertion_type of RFC 7523 §2.2.
const clientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// assertionLifetime is how long a client assertion is valid: one request needs seconds.
const assertionLifetime = time.Minute

// needsClientID reports whether the method identifies the client by client_id.
func needsClientID(method string) bool {
	switch method {
	case AuthBearer, AuthNone:
		return false
	}
	return true
}

// clientKey is the broker's signing key for private_key_jwt.
type clientKey struct {
	signer crypto.Signer
	alg    string
	kid    string
}

// LoadClientKey reads a PEM private key (PKCS #8, SEC 1 "EC PRIVATE KEY" or PKCS #1 "RSA PRIVATE KEY") for
// private_key_jwt. The algorithm follows the key: ES256/ES384/ES512 by curve, RS256 for RSA (at least 2048 bits),
// EdDSA for Ed25519.
func LoadClientKey(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("client key: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("client key %s: no PEM block", path)
	}
	var key any
	switch block.Type {
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	}
	if err != nil {
		return nil, fmt.Errorf("client key %s: %w", path, err)
	}
	s, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("client key %s: %T cannot sign", path, key)
	}
	if _, err := signingAlg(s); err != nil {
		return nil, fmt.Errorf("client key %s: %w", path, err)
	}
	return s, nil
}

// signingAlg is the JWS algorithm for a key.
func signingAlg(s crypto.Signer) (string, error) {
	switch k := s.Public().(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return "ES256", nil
		case elliptic.P384():
			return "ES384", nil
		case elliptic.P521():
			return "ES512", nil
		}
		return "", fmt.Errorf("unsupported curve %s", k.Curve.Params().Name)
	case *rsa.PublicKey:
		if k.N.BitLen() < minRSABits {
			return "", fmt.Errorf("RSA key of %d bits, at least %d required", k.N.BitLen(), minRSABits)
		}
		return "RS256", nil
	case ed25519.PublicKey:
		return "EdDSA", nil
	}
	return "", fmt.Errorf("unsupported key type %T", s.Public())
}

// assertion builds a signed client assertion (RFC 7523 §3): iss and sub the client id, aud the authorization
// server, a fresh jti so the server can refuse a replay, and a one-minute lifetime.
func (k *clientKey) assertion(clientID, audience string, now time.Time) (string, error) {
	header := map[string]string{"alg": k.alg, "typ": "JWT"}
	if k.kid != "" {
		header["kid"] = k.kid
	}
	jti := make([]byte, 16)
	if _, err := rand.Read(jti); err != nil {
		return "", fmt.Errorf("client assertion: %w", err)
	}
	claims := map[string]any{
		"iss": clientID, "sub": clientID, "aud": audience, "jti": hex.EncodeToString(jti),
		"iat": now.Unix(), "exp": now.Add(assertionLifetime).Unix(),
	}
	h, err := json.Marshal(header)
	if err != nil {
		return "", fmt.Errorf("client assertion: %w", err)
	}
	c, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("client assertion: %w", err)
	}
	input := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c)
	sig, err := k.sign(input)
	if err != nil {
		return "", fmt.Errorf("client assertion: %w", err)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}

// sign produces the JWS signature of input: r||s with fixed-width halves for ECDSA (RFC 7518 §3.4).
func (k *clientKey) sign(input string) ([]byte, error) {
	switch key := k.signer.(type) {
	case ed25519.PrivateKey:
		return ed25519.Sign(key, []byte(input)), nil
	case *ecdsa.PrivateKey:
		alg, _ := lookupAlgorithm(k.alg)
		h := alg.hash.New()
		h.Write([]byte(input))
		r, s, err := ecdsa.Sign(rand.Reader, key, h.Sum(nil))
		if err != nil {
			return nil, err
		}
		out := make([]byte, 2*alg.size)
		r.FillBytes(out[:alg.size])
		s.FillBytes(out[alg.size:])
		return out, nil
	case *rsa.PrivateKey:
		sum := sha256.Sum256([]byte(input))
		return rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	}
	return nil, fmt.Errorf("unsupported key type %T", k.signer)
}

// authenticate adds the client credentials of the configured method to an introspection request.
func (in *Introspector) authenticate(req *http.Request, form url.Values, endpoint string) error {
	cfg := &in.cfg
	switch cfg.AuthMethod {
	case AuthClientSecretBasic:
		// RFC 6749 §2.3.1: id and secret are form-encoded before they go into the Basic credentials.
		req.SetBasicAuth(url.QueryEscape(cfg.ClientID), url.QueryEscape(cfg.ClientSecret))
	case AuthClientSecretPost:
		form.Set("client_id", cfg.ClientID)
		form.Set("client_secret", cfg.ClientSecret)
	case AuthPrivateKeyJWT:
		// The audience is the issuer (RFC 7523 §3 and its update for OAuth 2.0 servers); without a configured
		// issuer, the endpoint the assertion is presented at.
		aud := cfg.Issuer
		if aud == "" {
			aud = endpoint
		}
		a, err := in.key.assertion(cfg.ClientID, aud, cfg.Now())
		if err != nil {
			return err
		}
		form.Set("client_id", cfg.ClientID)
		form.Set("client_assertion_type", clientAssertionType)
		form.Set("client_assertion", a)
	case AuthTLSClientAuth:
		form.Set("client_id", cfg.ClientID) // the certificate is in the TLS handshake
	case AuthBearer:
		req.Header.Set("Authorization", "Bearer "+cfg.BearerToken)
	case AuthNone:
		if cfg.ClientID != "" {
			form.Set("client_id", cfg.ClientID)
		}
	}
	return nil
}

// checkClientAuth validates the authentication settings and prepares what the method needs.
func (in *Introspector) checkClientAuth() error {
	cfg := &in.cfg
	switch cfg.AuthMethod {
	case "":
		cfg.AuthMethod = AuthClientSecretBasic
	case AuthClientSecretBasic, AuthClientSecretPost, AuthPrivateKeyJWT, AuthTLSClientAuth, AuthBearer, AuthNone:
	default:
		return fmt.Errorf("introspect rfc7662: unsupported AuthMethod %q (want %s, %s, %s, %s, %s or %s)",
			cfg.AuthMethod, AuthClientSecretBasic, AuthClientSecretPost, AuthPrivateKeyJWT, AuthTLSClientAuth,
			AuthBearer, AuthNone)
	}
	if needsClientID(cfg.AuthMethod) && cfg.ClientID == "" {
		return fmt.Errorf("introspect rfc7662: AuthMethod %s needs ClientID", cfg.AuthMethod)
	}
	switch cfg.AuthMethod {
	case AuthPrivateKeyJWT:
		if cfg.ClientKey == nil {
			return errors.New("introspect rfc7662: private_key_jwt needs ClientKey")
		}
		alg, err := signingAlg(cfg.ClientKey)
		if err != nil {
			return fmt.Errorf("introspect rfc7662: ClientKey: %w", err)
		}
		in.key = &clientKey{signer: cfg.ClientKey, alg: alg, kid: cfg.ClientKeyID}
	case AuthTLSClientAuth:
		if cfg.ClientCertificate == nil && cfg.HTTPClient == nil {
			return errors.New("introspect rfc7662: tls_client_auth needs ClientCertificate")
		}
	case AuthBearer:
		if cfg.BearerToken == "" || strings.ContainsAny(cfg.BearerToken, " \r\n") {
			return errors.New("introspect rfc7662: bearer needs BearerToken, one line without spaces")
		}
	}
	return nil
}

// withClientCertificate gives the client's transport the TLS client certificate.
func withClientCertificate(c *http.Client, cert *tls.Certificate) {
	if cert == nil {
		return
	}
	if tr, ok := c.Transport.(*http.Transport); ok {
		if tr.TLSClientConfig == nil {
			tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		tr.TLSClientConfig.Certificates = []tls.Certificate{*cert}
	}
}
