package mqtt

import (
	"sync"

	"github.com/eclipse/paho.golang/paho"

	"imb/sdk"
)

// PoPAuth is the paho.Auther of imb's IMB-POP method (sdk.PoPMethod): it answers the broker's nonce
// (AUTH 0x18, at CONNECT and at each re-authentication) with a proof signed by Key. The Dialer installs
// one when its token is bound to its key; set it as paho.ClientConfig.AuthHandler to use it directly.
type PoPAuth struct {
	Key      *sdk.Key
	Audience string // the broker's PoP audience (its pop_audience)

	mu       sync.Mutex
	clientID string
	// Mutate, if set, may change the claims before they are signed (tests make bad proofs with it).
	Mutate func(*sdk.PoPClaims)
}

// NewPoPAuth returns the handler for a connection that sends clientID in CONNECT.
func NewPoPAuth(key *sdk.Key, clientID, audience string) *PoPAuth {
	return &PoPAuth{Key: key, Audience: audience, clientID: clientID}
}

// SetClientID sets the client identifier later proofs name: the one the broker assigned, once CONNACK
// has told it.
func (a *PoPAuth) SetClientID(id string) {
	a.mu.Lock()
	a.clientID = id
	a.mu.Unlock()
}

// Authenticate answers the broker's nonce with a proof. An AUTH it cannot answer gets an AUTH without
// data, which the broker refuses.
func (a *PoPAuth) Authenticate(in *paho.Auth) *paho.Auth {
	out := &paho.Auth{ReasonCode: CodeContinueAuthentication, Properties: &paho.AuthProperties{AuthMethod: sdk.PoPMethod}}
	if in == nil || in.ReasonCode != CodeContinueAuthentication || in.Properties == nil || in.Properties.AuthMethod != sdk.PoPMethod {
		return out
	}
	a.mu.Lock()
	c := sdk.PoPClaims{Nonce: string(in.Properties.AuthData), ClientID: a.clientID, Audience: a.Audience}
	a.mu.Unlock()
	if a.Mutate != nil {
		a.Mutate(&c)
	}
	proof, err := a.Key.PoPProof(c)
	if err == nil {
		out.Properties.AuthData = []byte(proof)
	}
	return out
}

// Authenticated is called when the exchange succeeded.
func (*PoPAuth) Authenticated() {}
