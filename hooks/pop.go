package hooks

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"imb/introspect"
)

// PoPAuthMethod is imb's MQTT 5 authentication method for key-bound tokens (cnf.jwk, RFC 7800; cnf.jkt, RFC
// 9449). The exchange (docs/revocation.md, "Key-bound tokens"):
//
//  1. CONNECT (or AUTH 0x19 to re-authenticate): Authentication Method IMB-POP, Authentication Data the token.
//  2. The broker validates the token and answers AUTH 0x18 with a fresh nonce as Authentication Data.
//  3. The thing answers AUTH 0x18 with a compact JWS (typ PoPProofType) signed with the key the token is bound
//     to, whose payload is {"nonce": the nonce, "client_id": the Client Identifier sent in CONNECT ("" when
//     the broker assigns one), "aud": the broker's pop_audience, or, when the broker has none, one of the
//     token's own aud values}. With cnf.jkt the JWS carries its public key
//     in the jwk header; with cnf.jwk it may.
//  4. CONNACK 0x00 (or AUTH 0x00) naming IMB-POP, or a refusal: CONNACK 0x86, DISCONNECT 0x87 on re-auth.
//
// A nonce answers one proof only, within PoPTimeout: a proof of another connection, an earlier exchange or a late
// one does not prove anything here.
const PoPAuthMethod = "IMB-POP"

// PoPProofType is the typ header of an IMB-POP proof, so that no other JWS of the thing's key (a DPoP proof, AM's
// PoP JWTs) is taken for one.
const PoPProofType = "imb-pop+jwt"

// DefaultPoPTimeout bounds the wait for a proof after the broker sent its nonce.
const DefaultPoPTimeout = 10 * time.Second

// DefaultPoPAudience is what a proof names as the broker when neither the broker's configuration nor the token
// says (a token without aud).
const DefaultPoPAudience = "imb"

// PoPClaims is the payload of an IMB-POP proof.
type PoPClaims struct {
	Nonce    string `json:"nonce"`
	ClientID string `json:"client_id"`
	Audience string `json:"aud"`
}

// challenge is a nonce the broker sent and the token it asks a proof for.
type challenge struct {
	nonce    string
	clientID string // as the proof must name it
	expires  time.Time
	tok      *introspect.Token
	token    string
	bound    string // bindings already proven for tok (a certificate), kept once the key is proven
}

// newNonce is 32 random bytes, base64url: unguessable, and never the same twice.
func newNonce() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24)
	return base64.RawURLEncoding.EncodeToString(b)
}

// errStaleNonce is a proof that came after its nonce's time.
var errStaleNonce = errors.New("the nonce is stale: the proof came too late")

// verify checks a proof against the challenge: the token's key, this nonce, this client and this broker.
func (c *challenge) verify(proof []byte, audience string, now time.Time) error {
	if now.After(c.expires) {
		return errStaleNonce
	}
	payload, err := c.tok.Confirmation.VerifyProof(string(proof), PoPProofType)
	if err != nil {
		return err
	}
	var pc PoPClaims
	dec := json.NewDecoder(bytes.NewReader(payload))
	if err := dec.Decode(&pc); err != nil || dec.More() {
		return fmt.Errorf("%w: claims are not a JSON object", introspect.ErrProof)
	}
	if subtle.ConstantTimeCompare([]byte(pc.Nonce), []byte(c.nonce)) != 1 {
		return fmt.Errorf("%w: the proof is not over this exchange's nonce", introspect.ErrProof)
	}
	if pc.ClientID != c.clientID {
		return fmt.Errorf("%w: the proof names client id %q, not this connection's", introspect.ErrProof, truncateDetail(pc.ClientID))
	}
	if !popAudienceOK(pc.Audience, audience, c.tok) {
		return fmt.Errorf("%w: the proof's aud %q is not this broker", introspect.ErrProof, truncateDetail(pc.Audience))
	}
	return nil
}

// popAudienceOK reports whether a proof's aud names this broker: its configured PoP audience, or, when none is
// configured, an audience of the token itself (what the SDK names by default), DefaultPoPAudience for a token
// without aud.
func popAudienceOK(got, configured string, tok *introspect.Token) bool {
	switch {
	case configured != "":
		return got == configured
	case len(tok.Audience) == 0:
		return got == DefaultPoPAudience
	}
	return got != "" && slices.Contains(tok.Audience, got)
}

// authPacket is an AUTH the hook writes.
func authPacket(code byte, data []byte) packets.Packet {
	return packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Auth},
		ReasonCode:  code,
		Properties:  packets.Properties{AuthenticationMethod: PoPAuthMethod, AuthenticationData: data},
	}
}

// newChallenge is a challenge for tok, presented by cl.
func (h *Hook) newChallenge(cl *mqtt.Client, tok *introspect.Token, token string) *challenge {
	clientID := cl.ID
	if cl.Properties.Props.AssignedClientID != "" {
		clientID = "" // the client sent none: it cannot name the one the broker gave it
	}
	return &challenge{nonce: newNonce(), clientID: clientID, expires: h.cfg.Now().Add(h.cfg.PoPTimeout), tok: tok, token: token}
}

// proveAtConnect runs the IMB-POP exchange of a CONNECT: AUTH 0x18 with a nonce, then the client's AUTH with the
// proof. mochi has no step between CONNECT and CONNACK, so the hook reads the answer itself, on the connection's
// own goroutine, with the calls mochi's readConnectionPacket uses: nothing else reads the connection before the
// CONNACK, and MQTT 5 §4.12 allows the client only AUTH or DISCONNECT there.
func (h *Hook) proveAtConnect(cl *mqtt.Client, tok *introspect.Token) *refusal {
	c := h.newChallenge(cl, tok, "")
	if err := cl.WritePacket(authPacket(packets.CodeContinueAuthentication.Code, []byte(c.nonce))); err != nil {
		return badToken("proof of possession: the nonce could not be sent")
	}
	if cl.Net.Conn != nil {
		// Bounds the wait for the proof; mochi sets the keep-alive deadline after OnConnect.
		_ = cl.Net.Conn.SetReadDeadline(time.Now().Add(h.cfg.PoPTimeout))
	}
	fh := new(packets.FixedHeader)
	if err := cl.ReadFixedHeader(fh); err != nil {
		return proofRefusal(errors.New("no proof arrived"))
	}
	pk, err := cl.ReadPacket(fh)
	if err != nil || pk.FixedHeader.Type != packets.Auth {
		return proofRefusal(errors.New("the client answered the nonce with something other than AUTH"))
	}
	if pk.ReasonCode != packets.CodeContinueAuthentication.Code {
		return proofRefusal(fmt.Errorf("the proof's AUTH has reason %s, want 0x18", hexCode(pk.ReasonCode)))
	}
	if pk.Properties.AuthenticationMethod != PoPAuthMethod {
		return badAuthMethod("the proof's AUTH names another authentication method")
	}
	if err := c.verify(pk.Properties.AuthenticationData, h.cfg.PoPAudience, h.cfg.Now()); err != nil {
		return proofRefusal(err)
	}
	return nil
}

// proofRefusal is a CONNECT whose proof of possession failed: the credentials do not hold (0x86).
func proofRefusal(err error) *refusal {
	r := badToken("proof of possession failed")
	r.label = "bad_proof"
	r.detail = truncateDetail(err.Error())
	return r
}
