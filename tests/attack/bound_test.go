package attack

import (
	"context"
	"crypto"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	jose "github.com/go-jose/go-jose/v4"

	"imb/broker"
	"imb/internal/testpki"
	"imb/sdk"
	sdkmqtt "imb/sdk/mqtt"
)

// boundKey is the key a thing's tokens are bound to, as cnf.jwk and as cnf.jkt.
type boundKey struct {
	key *sdk.Key
	jwk map[string]any
	jkt string
}

func newBoundKey(t *testing.T) boundKey {
	t.Helper()
	k, err := sdk.GenerateKey(sdk.ES256)
	if err != nil {
		t.Fatal(err)
	}
	var jwk map[string]any
	if err := json.Unmarshal(mustJSON(t, k.PublicJWK()), &jwk); err != nil {
		t.Fatal(err)
	}
	tp, err := (&jose.JSONWebKey{Key: k.Public()}).Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return boundKey{key: k, jwk: jwk, jkt: base64.RawURLEncoding.EncodeToString(tp)}
}

// sniffer is the thing's own IMB-POP handler, seen by an attacker on the wire: it keeps every proof sent.
type sniffer struct {
	*sdkmqtt.PoPAuth
	mu     sync.Mutex
	proofs []string
	replay string // sent instead of a fresh proof
}

func (s *sniffer) Authenticate(in *paho.Auth) *paho.Auth {
	out := s.PoPAuth.Authenticate(in)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.replay != "" {
		out.Properties.AuthData = []byte(s.replay)
	}
	s.proofs = append(s.proofs, string(out.Properties.AuthData))
	return out
}

// TestCopiedBoundToken: a token copied from a thing whose tokens are bound to its key (cnf.jwk as AM issues
// it, cnf.jkt, or a cnf only introspection tells) is refused on every other connection: as a bearer token, with
// the attacker's key, with a proof replayed from the thing's connection, with a proof the thing made for another
// broker, with a forged proof header. The thing itself connects.
func TestCopiedBoundToken(t *testing.T) {
	p := newIDP(t)
	e := newEnv(t, p)
	k, attacker := newBoundKey(t), newBoundKey(t)
	byJWK := p.tokenWith("victim", func(c map[string]any) { c["cnf"] = map[string]any{"jwk": k.jwk} })
	byJKT := p.tokenWith("victim", func(c map[string]any) { c["cnf"] = map[string]any{"jkt": k.jkt} })
	opaque := p.opaqueWith("victim", func(c map[string]any) { c["cnf"] = map[string]any{"jwk": k.jwk} })
	// cnf naming two keys: the attacker's thumbprint next to the victim's key.
	mixed := p.tokenWith("victim", func(c map[string]any) { c["cnf"] = map[string]any{"jwk": k.jwk, "jkt": attacker.jkt} })

	// The thing connects; the attacker records its proof.
	own := &sniffer{PoPAuth: sdkmqtt.NewPoPAuth(k.key, "victim", audience)}
	r := e.mustConnect5("victim", byJWK, opts5{clean: true, method: sdk.PoPMethod, auther: own})
	_ = r.c.Disconnect(&paho.Disconnect{})
	waitDisconnected(e.b)
	sniffed := own.proofs[0]

	pop := func(key *sdk.Key, mut func(*sdk.PoPClaims)) paho.Auther {
		a := sdkmqtt.NewPoPAuth(key, "victim", audience)
		a.Mutate = mut
		return a
	}
	cases := []struct {
		name  string
		token string
		o     opts5
	}{
		{"cnf.jwk token as password", byJWK, opts5{}},
		{"cnf.jkt token as password", byJKT, opts5{}},
		{"introspected bound token as password", opaque, opts5{}},
		{"bound token under OAUTH2-JWT", byJWK, opts5{authData: true}},
		{"attacker's key, cnf.jwk", byJWK, opts5{method: sdk.PoPMethod, auther: pop(attacker.key, nil)}},
		{"attacker's key, cnf.jkt", byJKT, opts5{method: sdk.PoPMethod, auther: pop(attacker.key, nil)}},
		{"attacker's key, introspected cnf", opaque, opts5{method: sdk.PoPMethod, auther: pop(attacker.key, nil)}},
		{"cnf naming two keys, attacker holds one", mixed, opts5{method: sdk.PoPMethod, auther: pop(attacker.key, nil)}},
		{"proof replayed from the thing's connection", byJWK, opts5{method: sdk.PoPMethod,
			auther: &sniffer{PoPAuth: sdkmqtt.NewPoPAuth(attacker.key, "victim", audience), replay: sniffed}}},
		{"thing's proof relayed from another broker", byJWK, opts5{method: sdk.PoPMethod,
			auther: pop(k.key, func(c *sdk.PoPClaims) { c.Audience = "evil-broker" })}},
		{"thing's proof for another client id", byJWK, opts5{method: sdk.PoPMethod,
			auther: pop(k.key, func(c *sdk.PoPClaims) { c.ClientID = "other" })}},
		{"unsigned proof", byJWK, opts5{method: sdk.PoPMethod, auther: &sniffer{PoPAuth: sdkmqtt.NewPoPAuth(attacker.key, "victim", audience),
			replay: b64([]byte(`{"alg":"none","typ":"imb-pop+jwt"}`)) + "." + b64([]byte(`{"nonce":"x","client_id":"victim","aud":"imb"}`)) + "."}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.o.clean = true
			r := e.connect5("victim", c.token, c.o)
			if r.code() != 0x86 {
				t.Fatalf("CONNACK %#x (%v), want 0x86", r.code(), r.err)
			}
		})
	}
	t.Run("the thing with its key", func(t *testing.T) {
		for _, tok := range []string{byJWK, byJKT, opaque} {
			r := e.mustConnect5("victim", tok, opts5{clean: true, method: sdk.PoPMethod, auther: pop(k.key, nil)})
			_ = r.c.Disconnect(&paho.Disconnect{})
			waitDisconnected(e.b)
		}
	})
}

// TestCopiedCertificateBoundToken: a token bound to a thing's TLS client certificate (cnf.x5t#S256, RFC 8705) is
// refused on a connection with another certificate of the same CA, on the plain listener, in a re-authentication
// of another thing's TLS connection, and under IMB-POP with a key the attacker holds.
func TestCopiedCertificateBoundToken(t *testing.T) {
	p := newIDP(t)
	pki := testpki.New(t)
	e := newEnv(t, p, anyClientID, func(c *broker.Config) {
		c.TLSAddr = "127.0.0.1:0"
		c.TLSCert, c.TLSKey, c.TLSClientCA = pki.CertFile, pki.KeyFile, pki.CAFile
	})
	victim, attacker := pki.Client(t, "victim"), pki.Client(t, "attacker")
	stolen := p.tokenWith("victim", func(c map[string]any) { c["cnf"] = map[string]any{"x5t#S256": testpki.Thumbprint(victim)} })
	dialTLS := func(cert tls.Certificate) net.Conn {
		conn, err := tls.Dial("tcp", e.b.Addr("tls"), pki.ClientConfig(cert))
		if err != nil {
			t.Fatal(err)
		}
		return conn
	}
	connect := func(conn net.Conn, clientID, token string, method string) *paho.Connack {
		c := paho.NewClient(paho.ClientConfig{ClientID: clientID, Conn: packets.NewThreadSafeConn(conn), AuthHandler: passAuth{}})
		cp := &paho.Connect{ClientID: clientID, KeepAlive: 30, CleanStart: true, Properties: &paho.ConnectProperties{}}
		if method != "" {
			cp.Properties.AuthMethod, cp.Properties.AuthData = method, []byte(token)
		} else {
			cp.Password, cp.PasswordFlag = []byte(token), true
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ack, _ := c.Connect(ctx, cp)
		t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}); _ = conn.Close() })
		if ack == nil {
			t.Fatal("no CONNACK")
		}
		return ack
	}

	if ack := connect(dialTLS(victim), "victim-own", stolen, ""); ack.ReasonCode != 0 {
		t.Fatalf("the victim with its certificate: %#x", ack.ReasonCode)
	}
	if ack := connect(dialTLS(attacker), "victim-copy", stolen, ""); ack.ReasonCode != 0x86 {
		t.Fatalf("another certificate of the same CA: %#x, want 0x86", ack.ReasonCode)
	}
	if r := e.connect5("victim-plain", stolen, opts5{clean: true}); r.code() != 0x86 {
		t.Fatalf("plain listener: %#x, want 0x86", r.code())
	}
	if ack := connect(dialTLS(attacker), "victim-pop", stolen, sdk.PoPMethod); ack.ReasonCode != 0x86 {
		t.Fatalf("under IMB-POP without cnf key: %#x, want 0x86", ack.ReasonCode)
	}

	// The attacker's own session on its certificate, then re-authentication with the victim's token.
	conn := dialTLS(attacker)
	c := paho.NewClient(paho.ClientConfig{ClientID: "victim-reauth", Conn: packets.NewThreadSafeConn(conn), AuthHandler: passAuth{},
		OnClientError: func(error) {}, OnServerDisconnect: func(*paho.Disconnect) {}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	own := p.token("victim", "publish")
	if ack, err := c.Connect(ctx, &paho.Connect{ClientID: "victim-reauth", KeepAlive: 30, CleanStart: true,
		Properties: &paho.ConnectProperties{AuthMethod: "OAUTH2-JWT", AuthData: []byte(own)}}); err != nil || ack.ReasonCode != 0 {
		t.Fatalf("attacker's session: %v", err)
	}
	resp, err := c.Authenticate(ctx, &paho.Auth{ReasonCode: 0x19, Properties: &paho.AuthProperties{AuthMethod: "OAUTH2-JWT", AuthData: []byte(stolen)}})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Success || resp.ReasonCode != 0x87 {
		t.Fatalf("re-auth with the copied token on another certificate: success=%v %#x, want DISCONNECT 0x87", resp.Success, resp.ReasonCode)
	}
}
