package hooks

import (
	"context"
	"crypto/subtle"

	mqtt "github.com/mochi-mqtt/server/v2"

	"imb/authz"
	"imb/introspect"
)

// What a connection proved of its token's binding (identity.bound).
const (
	boundKey  = "key"         // possession of the cnf key: IMB-POP, or the HTTP door's DPoP proof
	boundCert = "certificate" // the TLS client certificate cnf.x5t#S256 names (RFC 8705)
)

// Proven is what a connection's client proved outside MQTT: the thumbprint of the key of the HTTP door request's
// DPoP proof, and that of the TLS client certificate.
type Proven struct {
	JKT     string // RFC 7638 SHA-256 thumbprint of a key the client proved it holds
	X5TS256 string // SHA-256 thumbprint (base64url) of the client's TLS certificate
}

// ProofSource is implemented by connections that know what their client proved (the broker's listeners wrap
// every connection so).
type ProofSource interface {
	Proven() Proven
}

type provenKey struct{}

// WithProven is how the HTTP door tells its in-process connection what the request proved.
func WithProven(ctx context.Context, p Proven) context.Context {
	return context.WithValue(ctx, provenKey{}, p)
}

// ProvenFrom returns what WithProven put in ctx.
func ProvenFrom(ctx context.Context) Proven {
	p, _ := ctx.Value(provenKey{}).(Proven)
	return p
}

// proven is what cl's connection proved; nothing when it cannot say.
func proven(cl *mqtt.Client) Proven {
	if ps, ok := cl.Net.Conn.(ProofSource); ok {
		return ps.Proven()
	}
	return Proven{}
}

// checkBinding holds a sender-constrained token to its binding: a key-bound token (cnf.jwk, cnf.jkt) is accepted
// only with a proof of that key (IMB-POP, or the door's DPoP proof), never as a bearer token; a certificate-bound
// token (cnf.x5t#S256, RFC 8705) only on a connection whose TLS client certificate has that thumbprint (the TLS
// listener with client certificates, or the HTTPS door). A token bound both ways needs both. A refusal is 0x86:
// without its proof the token is not a credential.
func (h *Hook) checkBinding(cl *mqtt.Client, id *identity) *refusal {
	if id.subject.Anonymous || id.tok == nil {
		return nil
	}
	cnf := id.tok.Confirmation
	keyBound := cnf.KeyBound()
	switch {
	case id.authMethod == PoPAuthMethod && !keyBound:
		return badToken("token is not bound to a key: " + PoPAuthMethod + " needs cnf.jwk or cnf.jkt; use " + AuthMethod)
	case !keyBound:
	case id.authMethod == PoPAuthMethod:
		if r := h.proveAtConnect(cl, id.tok); r != nil {
			return r
		}
		id.bound = boundKey
	case cl.Net.Listener == DoorListener && provedKey(proven(cl), cnf):
		id.bound = boundKey
	default:
		r := badToken("token is bound to a key: authenticate with " + PoPAuthMethod)
		r.label = "bound_token_as_bearer"
		return r
	}
	if cnf != nil && cnf.X5TS256 != "" {
		if !provedCert(proven(cl), cnf) {
			r := badToken("token is bound to a client certificate this connection did not present")
			r.label = "certificate_mismatch"
			return r
		}
		id.bound = joinBound(id.bound, boundCert)
	}
	return nil
}

// provedCert reports whether the connection's client certificate is the one cnf binds the token to.
func provedCert(p Proven, cnf *introspect.Confirmation) bool {
	return p.X5TS256 != "" && subtle.ConstantTimeCompare([]byte(p.X5TS256), []byte(cnf.X5TS256)) == 1
}

// joinBound joins what two proofs established ("key+certificate").
func joinBound(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + "+" + b
}

// provedKey reports whether p proves the key cnf binds the token to.
func provedKey(p Proven, cnf *introspect.Confirmation) bool {
	tp, err := cnf.Thumbprint()
	return err == nil && tp != "" && subtle.ConstantTimeCompare([]byte(tp), []byte(p.JKT)) == 1
}

// requireBound refuses a bearer token (0x87) of an identity the policy requires a bound token of
// (require_bound_token on a rule or limit entry that selects it); the audit line names the rule.
func requireBound(pol *authz.Policy, id *identity) *refusal {
	if id.bound != "" || id.subject.Anonymous {
		return nil
	}
	by := pol.BoundTokenRequired(id.subject)
	if by == "" {
		return nil
	}
	r := notAuthorized("policy requires a sender-constrained token (" + PoPAuthMethod + " or a certificate-bound token)")
	r.label = "bound_token_required"
	r.detail = by + " has require_bound_token and the token is a bearer token"
	return r
}
