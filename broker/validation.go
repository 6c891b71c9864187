package broker

import (
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"strings"

	"imb/introspect"
)

// Introspection modes, the values of the introspect configuration key.
const (
	// IntrospectAuto (or an empty value) picks the mode from the other keys; see plan.
	IntrospectAuto = "auto"
	// IntrospectAlways sends every token, JWTs included, to the introspection endpoint: the mode in which a revoked
	// JWT is refused before its exp.
	IntrospectAlways = "always"
	// IntrospectOpaqueOnly validates JWTs of the issuer locally and introspects every other token.
	IntrospectOpaqueOnly = "opaque-only"
	// IntrospectNever validates JWTs locally and refuses every other token.
	IntrospectNever = "never"
)

// validationPlan is how the broker validates tokens. One function (Config.plan) decides it, and both the running
// broker and Check use it, so what Check reports is what the broker does.
type validationPlan struct {
	mode       string // IntrospectAlways, IntrospectOpaqueOnly or IntrospectNever: auto already resolved
	configured string // the introspect key as given ("" for auto)
	jwt        bool   // JWTs of the issuer validated locally
	introspect bool   // some tokens introspected
	endpoint   string // the explicit introspection endpoint; "" means discovery from issuer
	issuer     string // the issuer checked on both paths; "" only for an introspect_url without issuer
}

// plan resolves the introspect key with the rest of the token validation configuration. Auto is opaque-only when
// an issuer and an introspection endpoint are both configured; always when only introspection is (introspect_url
// without issuer, or issuer and client_id without an endpoint or key source: the discovered-introspection setup,
// which has always sent every token upstream and keeps doing so, so no deployment silently stops seeing JWT
// revocations); never otherwise.
func (c *Config) plan() (validationPlan, error) {
	p := validationPlan{configured: c.Introspect, endpoint: c.IntrospectURL, issuer: c.Issuer}
	keySource := c.JWKSURL != "" || c.JWKSFile != ""
	switch c.Introspect {
	case "", IntrospectAuto:
		switch {
		case c.IntrospectURL != "" && (c.Issuer != "" || keySource):
			p.mode = IntrospectOpaqueOnly
		case c.IntrospectURL != "" || (c.Issuer != "" && c.ClientID != "" && !keySource):
			p.mode = IntrospectAlways
		default:
			p.mode = IntrospectNever
		}
	case IntrospectAlways, IntrospectOpaqueOnly, IntrospectNever:
		p.mode = c.Introspect
	default:
		return p, fmt.Errorf("introspect %q: want always, opaque-only, never or auto", c.Introspect)
	}
	p.jwt = p.mode != IntrospectAlways
	p.introspect = p.mode != IntrospectNever
	switch {
	case p.jwt && c.Issuer == "":
		return p, fmt.Errorf("introspect: %s validates JWTs locally and needs issuer", p.mode)
	case p.mode == IntrospectNever && c.IntrospectURL != "":
		return p, errors.New("introspect: never, but introspect_url is set: remove one of them")
	case p.introspect && c.IntrospectURL == "" && c.Issuer == "":
		return p, fmt.Errorf("introspect: %s needs introspect_url or an issuer whose discovery names the endpoint", p.mode)
	case p.mode == IntrospectAlways && keySource:
		return p, errors.New("introspect: always sends every token upstream; jwks_url and jwks_file would not be used")
	}
	return p, nil
}

// String describes the plan for Check and the start-up log, e.g. "JWTs of ISSUER locally, other tokens by
// introspection at the endpoint discovered from ISSUER (introspect: opaque-only)".
func (p validationPlan) String() string {
	where := "the endpoint discovered from " + p.issuer
	if p.endpoint != "" {
		where = p.endpoint
	}
	check := ", iss must be " + p.issuer
	if p.issuer == "" {
		check = ", iss not checked (no issuer configured)"
	}
	var s string
	switch p.mode {
	case IntrospectNever:
		s = "JWTs of " + p.issuer + " locally, no introspection"
	case IntrospectOpaqueOnly:
		s = "JWTs of " + p.issuer + " locally, other tokens by introspection at " + where + check
	default:
		s = "every token by introspection at " + where + check
	}
	configured := p.configured
	if configured == "" || configured == IntrospectAuto {
		configured = "auto, resolved to " + p.mode
	}
	return s + " (introspect: " + configured + ")"
}

// introspectCredentials loads the files the introspection client authentication method needs.
func (c *Config) introspectCredentials(ic *introspect.IntrospectionConfig) error {
	switch c.IntrospectAuthMethod {
	case introspect.AuthPrivateKeyJWT:
		if c.IntrospectClientKey == "" {
			return errors.New("introspect_auth_method private_key_jwt needs introspect_client_key (a PEM private key file)")
		}
		key, err := introspect.LoadClientKey(c.IntrospectClientKey)
		if err != nil {
			return fmt.Errorf("introspect_client_key: %w", err)
		}
		ic.ClientKey, ic.ClientKeyID = key, c.IntrospectClientKeyID
	case introspect.AuthTLSClientAuth:
		if c.IntrospectClientCert == "" || c.IntrospectClientCertKey == "" {
			return errors.New("introspect_auth_method tls_client_auth needs introspect_client_cert and introspect_client_cert_key")
		}
		cert, err := tls.LoadX509KeyPair(c.IntrospectClientCert, c.IntrospectClientCertKey)
		if err != nil {
			return fmt.Errorf("introspect_client_cert: %w", err)
		}
		ic.ClientCertificate = &cert
	case introspect.AuthBearer:
		if c.IntrospectBearerTokenFile == "" {
			return errors.New("introspect_auth_method bearer needs introspect_bearer_token_file")
		}
		b, err := os.ReadFile(c.IntrospectBearerTokenFile)
		if err != nil {
			return fmt.Errorf("introspect_bearer_token_file: %w", err)
		}
		ic.BearerToken = strings.TrimRight(string(b), "\r\n")
	}
	return nil
}
