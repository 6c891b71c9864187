package sdk

import (
	"crypto/x509"
	"errors"
	"time"
)

// ThingType is the kind of thing an identity represents.
type ThingType string

// The thing types AM knows.
const (
	Device  ThingType = "device"
	Service ThingType = "service"
	Gateway ThingType = "gateway"
)

// TreeContext is what a handler needs to know about the realm it answers for.
type TreeContext struct {
	// RealmPath is the realm's path ("/", "/a/b"), the default audience of PoP JWTs; empty for a
	// realm alias, where the handler's Audience must be set.
	RealmPath string
	// OAuthBaseURL is the realm's OAuth 2.0 base URL, from which a client assertion's default
	// audience ({OAuthBaseURL}/access_token) is made.
	OAuthBaseURL string
	// Now is the time the JWTs are issued at.
	Now time.Time
}

// CallbackHandler answers the callbacks of an authentication tree it understands. For each callback
// the handlers are asked in order; the first that returns true has filled it. Callbacks no handler
// claims are echoed unchanged (AM then usually fails the tree).
type CallbackHandler interface {
	HandleCallback(tc TreeContext, cb *Callback) (handled bool, err error)
}

// ProofKeyHolder is implemented by handlers that prove possession of a key. When such a handler
// answered a callback in the last round before AM issued the SSO token, the session is a PoP session
// and every later request body is signed with that key.
type ProofKeyHolder interface {
	ProofKey() *Key
}

// ErrNoAudience reports a realm alias without an explicit audience.
var ErrNoAudience = errors.New("sdk: realm alias: the handler's Audience must be set")

// Authenticator answers AM's Authenticate Thing node in either of its methods: proof of possession
// (jwt-pop-authentication) and client assertion (client_assertion).
type Authenticator struct {
	ThingID string
	Key     *Key
	// Audience of the PoP JWT; default the realm path. For a client assertion the default is the realm's
	// {OAuth base}/access_token; AssertionAudience overrides it.
	Audience          string
	AssertionAudience string
	// Claims are merged at the top level of the JWT (custom claims checked by later tree nodes).
	Claims map[string]any
}

// HandleCallback implements CallbackHandler.
func (a *Authenticator) HandleCallback(tc TreeContext, cb *Callback) (bool, error) {
	var (
		jwt string
		err error
	)
	switch cb.ID() {
	case CallbackPoPAuthentication:
		aud, aerr := audience(a.Audience, tc.RealmPath)
		if aerr != nil {
			return false, aerr
		}
		if err := a.check(); err != nil {
			return false, err
		}
		nonce := cb.Challenge()
		if nonce == "" {
			return false, errors.New("jwt-pop-authentication: empty challenge")
		}
		jwt, err = popAuthJWT(a.Key, a.ThingID, aud, nonce, a.Claims, tc.Now)
	case CallbackClientAssertion:
		if err := a.check(); err != nil {
			return false, err
		}
		aud := a.AssertionAudience
		if aud == "" {
			aud = tc.OAuthBaseURL + "/access_token"
		}
		jwt, err = clientAssertionJWT(a.Key, a.ThingID, aud, a.Claims, tc.Now)
	default:
		return false, nil
	}
	if err != nil {
		return false, err
	}
	cb.SetInput(jwt)
	return true, nil
}

// ProofKey implements ProofKeyHolder.
func (a *Authenticator) ProofKey() *Key { return a.Key }

func (a *Authenticator) check() error {
	if a.ThingID == "" || a.Key == nil {
		return errors.New("authenticator: ThingID and Key are required")
	}
	return nil
}

// Registrar answers AM's Register Thing node: jwt-pop-registration with a registration JWT signed by
// Key (with the certificate chain as x5c when Certificates are set), and software_statement with
// SoftwareStatement when the method also needs one.
type Registrar struct {
	ThingID string
	Key     *Key
	// ThingType defaults to Device.
	ThingType ThingType
	// Certificates, leaf first, for the PoP & certificate method.
	Certificates []*x509.Certificate
	// SoftwareStatement, the publisher-signed JWT, for the PoP & software statement method.
	SoftwareStatement string
	// Audience of the registration JWT; default the realm path.
	Audience string
	// Claims are merged at the top level (AM can map them to identity attributes).
	Claims map[string]any
}

// HandleCallback implements CallbackHandler.
func (r *Registrar) HandleCallback(tc TreeContext, cb *Callback) (bool, error) {
	switch cb.ID() {
	case CallbackPoPRegistration:
		if r.Key == nil {
			return false, errors.New("registrar: Key is required")
		}
		aud, err := audience(r.Audience, tc.RealmPath)
		if err != nil {
			return false, err
		}
		nonce := cb.Challenge()
		if nonce == "" {
			return false, errors.New("jwt-pop-registration: empty challenge")
		}
		tt := r.ThingType
		if tt == "" {
			tt = Device
		}
		jwt, err := registrationJWT(r.Key, r.ThingID, aud, nonce, tt, r.Certificates, r.Claims, tc.Now)
		if err != nil {
			return false, err
		}
		cb.SetInput(jwt)
		return true, nil
	case CallbackSoftwareStatement:
		if r.SoftwareStatement == "" {
			return false, nil
		}
		cb.SetInput(r.SoftwareStatement)
		return true, nil
	}
	return false, nil
}

// ProofKey implements ProofKeyHolder.
func (r *Registrar) ProofKey() *Key { return r.Key }

// SoftwareStatementHandler answers software_statement alone: the registration method that needs no
// proof of possession, where AM generates the identity's id. It proves no key, so the session it
// yields is a plain one.
type SoftwareStatementHandler struct {
	Statement string
}

// HandleCallback implements CallbackHandler.
func (s *SoftwareStatementHandler) HandleCallback(_ TreeContext, cb *Callback) (bool, error) {
	if cb.ID() != CallbackSoftwareStatement || s.Statement == "" {
		return false, nil
	}
	cb.SetInput(s.Statement)
	return true, nil
}

// NameHandler answers a NameCallback with a user name.
type NameHandler struct{ Name string }

// HandleCallback implements CallbackHandler.
func (h *NameHandler) HandleCallback(_ TreeContext, cb *Callback) (bool, error) {
	if cb.Type != TypeName {
		return false, nil
	}
	cb.SetInput(h.Name)
	return true, nil
}

// PasswordHandler answers a PasswordCallback.
type PasswordHandler struct{ Password string }

// HandleCallback implements CallbackHandler.
func (h *PasswordHandler) HandleCallback(_ TreeContext, cb *Callback) (bool, error) {
	if cb.Type != TypePassword {
		return false, nil
	}
	cb.SetInput(h.Password)
	return true, nil
}

// String hides the password from %v.
func (h *PasswordHandler) String() string { return "PasswordHandler{***}" }

func audience(configured, realmPath string) (string, error) {
	if configured != "" {
		return configured, nil
	}
	if realmPath == "" {
		return "", ErrNoAudience
	}
	return realmPath, nil
}
