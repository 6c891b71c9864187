package attack

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"imb/broker"
)

// outcome is what a CONNECT must end in.
type outcome int

const (
	accepted       outcome = iota // CONNACK 0x00: positive controls, proving the harness can see an acceptance
	badToken                      // v5 0x86, v3.1.1 0x04
	notBound                      // v5 0x87, v3.1.1 0x05: identity binding
	refusedAny                    // 0x86 or 0x87 (v3.1.1 0x04 or 0x05): either is a refusal for the right reason
	closed                        // no CONNACK at all: the packet exceeded MaximumPacketSize
	flagNoPassword                // v5 0x82: password flag with an empty password is malformed [MQTT-3.1.2-19] (mochi); v3.1.1 0x04
)

func (o outcome) String() string {
	return [...]string{"accepted", "0x86/0x04", "0x87/0x05", "0x86|0x87", "closed without CONNACK", "0x82/0x04"}[o]
}

// matches reports whether a CONNACK code (-1: none) is the outcome for the protocol.
func (o outcome) matches(code int, v5 bool) bool {
	bad, bind := 0x86, 0x87
	if !v5 {
		bad, bind = 0x04, 0x05
	}
	switch o {
	case accepted:
		return code == 0
	case badToken:
		return code == bad
	case notBound:
		return code == bind
	case refusedAny:
		return code == bad || code == bind
	case flagNoPassword:
		return (v5 && code == 0x82) || (!v5 && code == bad)
	}
	return code == -1
}

// corpus crafts tokens against the trusted idp, a second, untrusted provider, and an
// attacker's server.
type corpus struct {
	t     *testing.T
	idp   *idp
	other *idp
	trap  *trap
}

// tok signs claims for t1 changed by mod, under a header changed by hmod, with the
// trusted EC key.
func (c *corpus) tok(mod func(map[string]any), hmod func(map[string]any)) string {
	h, cl := c.idp.header(), c.idp.claims("t1", "publish", "subscribe")
	if mod != nil {
		mod(cl)
	}
	if hmod != nil {
		hmod(h)
	}
	return c.idp.sign(h, cl)
}

// raw signs exact header and payload texts with the trusted EC key.
func (c *corpus) raw(header, payload string) string {
	return signJWS(c.t, "ES256", c.idp.ec, []byte(header), []byte(payload))
}

// claimsJSON is the JSON text of valid t1 claims.
func (c *corpus) claimsJSON() string {
	return string(mustJSON(c.t, c.idp.claims("t1", "publish", "subscribe")))
}

func (c *corpus) good() string { return c.tok(nil, nil) }

// part replaces segment i of a compact token.
func part(token string, i int, s string) string {
	p := strings.Split(token, ".")
	p[i] = s
	return strings.Join(p, ".")
}

// rsaPublicPEM is the trusted RSA public key as an attacker would download it.
func (c *corpus) rsaPublicPEM(pkcs1 bool) []byte {
	if pkcs1 {
		return pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&c.idp.rsa.PublicKey)})
	}
	der, err := x509.MarshalPKIXPublicKey(&c.idp.rsa.PublicKey)
	if err != nil {
		c.t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// hs256 signs valid claims with HS256 under secret, with kid.
func (c *corpus) hs256(secret []byte, kid string) string {
	h := map[string]any{"alg": "HS256", "typ": "JWT", "kid": kid}
	return signJWS(c.t, "HS256", secret, mustJSON(c.t, h), []byte(c.claimsJSON()))
}

// attackerCert is a self-signed certificate for the attacker's key (x5c injection).
func (c *corpus) attackerCert() string {
	tpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: c.idp.url()},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &c.trap.key.PublicKey, c.trap.key)
	if err != nil {
		c.t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(der)
}

// byAttacker signs valid claims with the attacker's key under header h.
func (c *corpus) byAttacker(h map[string]any) string {
	return signJWS(c.t, "ES256", c.trap.key, mustJSON(c.t, h), []byte(c.claimsJSON()))
}

type tokenCase struct {
	name     string
	clientID string // default t1
	token    func(c *corpus) string
	want     outcome
}

// tokenCases is the attack-token corpus. Every case differs from a valid token in
// the way its name says; the accepted controls show that the same harness sees an
// acceptance when there is one.
func tokenCases() []tokenCase {
	hour := time.Hour
	return []tokenCase{
		// Controls.
		{"control: valid ES256", "", func(c *corpus) string { return c.good() }, accepted},
		{"control: valid RS256 from the published RSA key", "", func(c *corpus) string {
			h := map[string]any{"alg": "RS256", "typ": "JWT", "kid": c.idp.rsaKid}
			return signJWS(c.t, "RS256", c.idp.rsa, mustJSON(c.t, h), []byte(c.claimsJSON()))
		}, accepted},

		// alg none and its spellings.
		{"alg none, empty signature", "", func(c *corpus) string {
			return b64([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + b64([]byte(c.claimsJSON())) + "."
		}, badToken},
		{"alg None with the valid token's signature", "", func(c *corpus) string {
			return part(c.good(), 0, b64([]byte(`{"alg":"None","typ":"JWT","kid":"ec-1"}`)))
		}, badToken},
		{"alg NONE, no signature segment", "", func(c *corpus) string {
			return b64([]byte(`{"alg":"NONE"}`)) + "." + b64([]byte(c.claimsJSON()))
		}, badToken},
		{"alg missing", "", func(c *corpus) string { return c.raw(`{"typ":"JWT","kid":"ec-1"}`, c.claimsJSON()) }, badToken},
		{"alg lower-case es256", "", func(c *corpus) string { return c.tok(nil, func(h map[string]any) { h["alg"] = "es256" }) }, badToken},

		// Algorithm confusion.
		{"HS256 keyed with the RSA public key (PKIX PEM)", "", func(c *corpus) string { return c.hs256(c.rsaPublicPEM(false), c.idp.rsaKid) }, badToken},
		{"HS256 keyed with the RSA public key (PKCS#1 PEM)", "", func(c *corpus) string { return c.hs256(c.rsaPublicPEM(true), c.idp.rsaKid) }, badToken},
		{"HS256 keyed with the EC JWK JSON", "", func(c *corpus) string { return c.hs256(mustJSON(c.t, c.idp.ecJWK()), c.idp.ecKid) }, badToken},
		{"HS256 keyed with the RSA modulus", "", func(c *corpus) string { return c.hs256(c.idp.rsa.N.Bytes(), c.idp.rsaKid) }, badToken},
		{"RS256 signed by the RSA key under the EC kid", "", func(c *corpus) string {
			h := map[string]any{"alg": "RS256", "kid": c.idp.ecKid}
			return signJWS(c.t, "RS256", c.idp.rsa, mustJSON(c.t, h), []byte(c.claimsJSON()))
		}, badToken},
		{"ES256 header naming the RSA kid", "", func(c *corpus) string { return c.tok(nil, func(h map[string]any) { h["kid"] = c.idp.rsaKid }) }, badToken},
		{"ES384 header over the P-256 key", "", func(c *corpus) string { return c.tok(nil, func(h map[string]any) { h["alg"] = "ES384" }) }, badToken},
		{"EdDSA header over the P-256 key", "", func(c *corpus) string { return c.tok(nil, func(h map[string]any) { h["alg"] = "EdDSA" }) }, badToken},

		// Signatures.
		{"forged: attacker key, trusted kid", "", func(c *corpus) string { return c.byAttacker(c.idp.header()) }, badToken},
		{"stripped signature, trailing dot kept", "", func(c *corpus) string { return part(c.good(), 2, "") }, badToken},
		{"stripped signature and dot", "", func(c *corpus) string {
			g := c.good()
			return g[:strings.LastIndexByte(g, '.')]
		}, badToken},
		{"signature of zeros (r = s = 0)", "", func(c *corpus) string { return part(c.good(), 2, b64(make([]byte, 64))) }, badToken},
		{"signature in DER instead of r||s", "", func(c *corpus) string {
			g := c.good()
			input := g[:strings.LastIndexByte(g, '.')]
			sum := sha256.Sum256([]byte(input))
			der, err := ecdsa.SignASN1(rand.Reader, c.idp.ec, sum[:])
			if err != nil {
				c.t.Fatal(err)
			}
			return input + "." + b64(der)
		}, badToken},
		{"signature of another token", "", func(c *corpus) string {
			other := c.tok(func(m map[string]any) { m["jti"] = "other" }, nil)
			return part(c.good(), 2, strings.Split(other, ".")[2])
		}, badToken},
		{"tampered payload: sub changed to cloud-app", "cloud-app", func(c *corpus) string {
			cl := c.idp.claims("cloud-app", "fleet:read", "fleet:command")
			return part(c.good(), 1, b64(mustJSON(c.t, cl)))
		}, badToken},
		{"tampered payload: scope widened", "", func(c *corpus) string {
			cl := c.idp.claims("t1", "publish", "subscribe", "fleet:read", "fleet:command")
			return part(c.good(), 1, b64(mustJSON(c.t, cl)))
		}, badToken},
		{"tampered header: typ changed", "", func(c *corpus) string {
			return part(c.good(), 0, b64([]byte(`{"alg":"ES256","typ":"at+jwt","kid":"ec-1"}`)))
		}, badToken},
		{"last signature byte flipped", "", func(c *corpus) string {
			g := c.good()
			sig, _ := base64.RawURLEncoding.DecodeString(strings.Split(g, ".")[2])
			sig[len(sig)-1] ^= 1
			return part(g, 2, b64(sig))
		}, badToken},

		// Time.
		{"expired a minute ago", "", func(c *corpus) string {
			return c.tok(func(m map[string]any) { m["exp"] = time.Now().Add(-time.Minute).Unix() }, nil)
		}, badToken},
		{"expires now (no leeway on exp)", "", func(c *corpus) string {
			return c.tok(func(m map[string]any) { m["exp"] = time.Now().Unix() }, nil)
		}, badToken},
		{"nbf an hour ahead", "", func(c *corpus) string {
			return c.tok(func(m map[string]any) { m["nbf"] = time.Now().Add(hour).Unix() }, nil)
		}, badToken},
		{"iat an hour ahead", "", func(c *corpus) string {
			return c.tok(func(m map[string]any) { m["iat"] = time.Now().Add(hour).Unix() }, nil)
		}, badToken},
		{"exp missing", "", func(c *corpus) string { return c.tok(func(m map[string]any) { delete(m, "exp") }, nil) }, badToken},
		{"exp as a string", "", func(c *corpus) string {
			return c.tok(func(m map[string]any) { m["exp"] = time.Now().Add(hour).Format(time.RFC3339) }, nil)
		}, badToken},
		{"exp beyond year 9999", "", func(c *corpus) string { return c.tok(func(m map[string]any) { m["exp"] = 1e15 }, nil) }, badToken},
		{"exp negative", "", func(c *corpus) string { return c.tok(func(m map[string]any) { m["exp"] = -1 }, nil) }, badToken},

		// Audience and issuer.
		{"wrong audience", "", func(c *corpus) string { return c.tok(func(m map[string]any) { m["aud"] = "another-service" }, nil) }, badToken},
		{"audience differs in case", "", func(c *corpus) string { return c.tok(func(m map[string]any) { m["aud"] = "IMB" }, nil) }, badToken},
		{"audience missing", "", func(c *corpus) string { return c.tok(func(m map[string]any) { delete(m, "aud") }, nil) }, badToken},
		{"audience list without imb", "", func(c *corpus) string { return c.tok(func(m map[string]any) { m["aud"] = []string{"a", "b"} }, nil) }, badToken},
		{"wrong issuer", "", func(c *corpus) string {
			return c.tok(func(m map[string]any) { m["iss"] = "https://evil.example" }, nil)
		}, badToken},
		{"issuer with a trailing slash", "", func(c *corpus) string { return c.tok(func(m map[string]any) { m["iss"] = c.idp.url() + "/" }, nil) }, badToken},
		{"issuer missing", "", func(c *corpus) string { return c.tok(func(m map[string]any) { delete(m, "iss") }, nil) }, badToken},
		{"valid token of another issuer", "", func(c *corpus) string { return c.other.token("t1", "publish", "subscribe") }, badToken},
		{"another issuer's key under a colliding kid, our iss", "", func(c *corpus) string {
			return c.other.sign(c.other.header(), c.idp.claims("t1", "publish"))
		}, badToken},
		{"ID token presented as access token (tokenName)", "", func(c *corpus) string {
			return c.tok(func(m map[string]any) { m["tokenName"] = "id_token" }, nil)
		}, badToken},

		// Size.
		{"just over the token size cap (8 KiB), validly signed", "", func(c *corpus) string {
			return c.tok(func(m map[string]any) { m["pad"] = strings.Repeat("x", 8<<10) }, nil)
		}, badToken},
		{"near the maximum packet size", "", func(c *corpus) string {
			return c.tok(func(m map[string]any) { m["pad"] = strings.Repeat("x", maxPacket*3/4-600) }, nil)
		}, badToken},
		{"over the maximum packet size", "", func(c *corpus) string {
			return c.tok(func(m map[string]any) { m["pad"] = strings.Repeat("x", maxPacket) }, nil)
		}, closed},
		{"huge header (4 KiB parameter), validly signed", "", func(c *corpus) string {
			return c.tok(nil, func(h map[string]any) { h["x"] = strings.Repeat("A", 4<<10) })
		}, badToken},
		{"deeply nested claims, validly signed", "", func(c *corpus) string {
			nested := strings.Repeat(`{"a":`, 64) + "1" + strings.Repeat("}", 64)
			p := strings.TrimSuffix(c.claimsJSON(), "}") + `,"deep":` + nested + "}"
			return c.raw(`{"alg":"ES256","kid":"ec-1"}`, p)
		}, badToken},

		// Header injection.
		{"crit header", "", func(c *corpus) string {
			return c.tok(nil, func(h map[string]any) { h["crit"] = []string{"exp"}; h["exp"] = 1 })
		}, badToken},
		{"jku to the attacker's key set", "", func(c *corpus) string {
			h := c.idp.header()
			h["jku"], h["kid"] = c.trap.srv.URL+"/jwks", "attacker"
			return c.byAttacker(h)
		}, badToken},
		{"x5u to the attacker's server", "", func(c *corpus) string {
			h := c.idp.header()
			h["x5u"] = c.trap.srv.URL + "/cert.pem"
			return c.byAttacker(h)
		}, badToken},
		{"embedded jwk of the attacker", "", func(c *corpus) string {
			h := c.idp.header()
			h["jwk"] = c.trap.jwk("attacker")
			delete(h, "kid")
			return c.byAttacker(h)
		}, badToken},
		{"embedded jwk under the trusted kid", "", func(c *corpus) string {
			h := c.idp.header()
			h["jwk"] = c.trap.jwk(c.idp.ecKid)
			return c.byAttacker(h)
		}, badToken},
		{"x5c with the attacker's self-signed certificate", "", func(c *corpus) string {
			h := c.idp.header()
			h["x5c"] = []string{c.attackerCert()}
			return c.byAttacker(h)
		}, badToken},
		{"b64:false (unencoded payload)", "", func(c *corpus) string { return c.tok(nil, func(h map[string]any) { h["b64"] = false }) }, badToken},
		{"zip header", "", func(c *corpus) string { return c.tok(nil, func(h map[string]any) { h["zip"] = "DEF" }) }, badToken},

		// kid tricks.
		{"kid missing", "", func(c *corpus) string { return c.tok(nil, func(h map[string]any) { delete(h, "kid") }) }, badToken},
		{"kid unknown", "", func(c *corpus) string { return c.tok(nil, func(h map[string]any) { h["kid"] = "no-such-key" }) }, badToken},
		{"kid path traversal", "", func(c *corpus) string {
			return c.tok(nil, func(h map[string]any) { h["kid"] = "../../../../../../dev/null" })
		}, badToken},
		{"kid SQL injection", "", func(c *corpus) string { return c.tok(nil, func(h map[string]any) { h["kid"] = "' OR '1'='1' --" }) }, badToken},
		{"kid with NUL after the trusted kid", "", func(c *corpus) string {
			return c.tok(nil, func(h map[string]any) { h["kid"] = c.idp.ecKid + "\x00" })
		}, badToken},
		{"kid of 300 bytes", "", func(c *corpus) string {
			return c.tok(nil, func(h map[string]any) { h["kid"] = strings.Repeat("k", 300) })
		}, badToken},
		{"kid as a number", "", func(c *corpus) string { return c.tok(nil, func(h map[string]any) { h["kid"] = 1 }) }, badToken},
		{"kid as an array holding the trusted kid", "", func(c *corpus) string {
			return c.tok(nil, func(h map[string]any) { h["kid"] = []string{c.idp.ecKid} })
		}, badToken},

		// Structure.
		{"nested JWT (cty JWT around a valid token)", "", func(c *corpus) string {
			return c.raw(`{"alg":"ES256","kid":"ec-1","cty":"JWT"}`, c.good())
		}, badToken},
		{"JWE compact serialization", "", func(c *corpus) string {
			h := b64([]byte(`{"alg":"RSA-OAEP-256","enc":"A256GCM","kid":"rsa-1"}`))
			return h + "." + b64(make([]byte, 256)) + "." + b64(make([]byte, 12)) + "." + b64([]byte(c.claimsJSON())) + "." + b64(make([]byte, 16))
		}, badToken},
		{"enc header in a three-part token", "", func(c *corpus) string { return c.tok(nil, func(h map[string]any) { h["enc"] = "A256GCM" }) }, badToken},
		{"four segments", "", func(c *corpus) string { return c.good() + "." + b64([]byte("x")) }, badToken},
		{"duplicate sub: t1 then cloud-app", "", func(c *corpus) string {
			p := strings.TrimSuffix(c.claimsJSON(), "}") + `,"sub":"cloud-app"}`
			return c.raw(`{"alg":"ES256","kid":"ec-1"}`, p)
		}, badToken},
		{"duplicate sub spelled with an escape", "", func(c *corpus) string {
			p := strings.TrimSuffix(c.claimsJSON(), "}") + `,"\u0073ub":"cloud-app"}`
			return c.raw(`{"alg":"ES256","kid":"ec-1"}`, p)
		}, badToken},
		{"duplicate scope widening the grant", "", func(c *corpus) string {
			p := strings.TrimSuffix(c.claimsJSON(), "}") + `,"scope":["fleet:read","fleet:command"]}`
			return c.raw(`{"alg":"ES256","kid":"ec-1"}`, p)
		}, badToken},
		{"duplicate alg in header: none then ES256", "", func(c *corpus) string {
			return c.raw(`{"alg":"none","alg":"ES256","kid":"ec-1"}`, c.claimsJSON())
		}, badToken},
		{"payload not JSON, validly signed", "", func(c *corpus) string { return c.raw(`{"alg":"ES256","kid":"ec-1"}`, "sub=t1") }, badToken},
		{"payload a JSON array, validly signed", "", func(c *corpus) string {
			return c.raw(`{"alg":"ES256","kid":"ec-1"}`, "["+c.claimsJSON()+"]")
		}, badToken},
		{"payload invalid UTF-8, validly signed", "", func(c *corpus) string {
			p := strings.TrimSuffix(c.claimsJSON(), "}") + ",\"x\":\"\xff\xfe\"}"
			return c.raw(`{"alg":"ES256","kid":"ec-1"}`, p)
		}, badToken},
		{"header not JSON", "", func(c *corpus) string { return part(c.good(), 0, b64([]byte("alg=ES256"))) }, badToken},
		{"header JSON null", "", func(c *corpus) string { return part(c.good(), 0, b64([]byte("null"))) }, badToken},
		{"base64 padding added", "", func(c *corpus) string { return part(c.good(), 1, strings.Split(c.good(), ".")[1]+"==") }, badToken},
		{"not a token at all", "", func(*corpus) string { return "hunter2" }, badToken},
		{"unknown opaque token", "", func(*corpus) string { return b64([]byte("0123456789abcdef0123")) }, badToken},

		// Empty and whitespace.
		{"empty password", "", func(*corpus) string { return "" }, flagNoPassword},
		{"single space", "", func(*corpus) string { return " " }, badToken},
		{"tab and newline", "", func(*corpus) string { return "\t\n" }, badToken},
		{"valid token with a trailing newline", "", func(c *corpus) string { return c.good() + "\n" }, badToken},
		{"valid token with a leading space", "", func(c *corpus) string { return " " + c.good() }, badToken},
		{"valid token with CRLF inside", "", func(c *corpus) string {
			g := c.good()
			return g[:20] + "\r\n" + g[20:]
		}, badToken},
		{"Bearer prefix", "", func(c *corpus) string { return "Bearer " + c.good() }, badToken},

		// Identity values and binding.
		{"sub missing", "", func(c *corpus) string { return c.tok(func(m map[string]any) { delete(m, "sub") }, nil) }, badToken},
		{"sub empty", "", func(c *corpus) string { return c.tok(func(m map[string]any) { m["sub"] = "" }, nil) }, badToken},
		{"sub a number", "", func(c *corpus) string { return c.tok(func(m map[string]any) { m["sub"] = 7 }, nil) }, badToken},
		{"valid token, client id of another thing", "t2", func(c *corpus) string { return c.good() }, notBound},
		{"valid token, client id with the thing id as prefix", "t1x", func(c *corpus) string { return c.good() }, notBound},
		{"sub with a slash", "a/b", func(c *corpus) string { return c.tok(func(m map[string]any) { m["sub"] = "a/b" }, nil) }, refusedAny},
		{"sub +", "+", func(c *corpus) string { return c.tok(func(m map[string]any) { m["sub"] = "+" }, nil) }, refusedAny},
		{"sub #", "#", func(c *corpus) string { return c.tok(func(m map[string]any) { m["sub"] = "#" }, nil) }, refusedAny},
		{"sub with a NUL", "t1", func(c *corpus) string { return c.tok(func(m map[string]any) { m["sub"] = "t1\x00" }, nil) }, refusedAny},
		{"subname + overriding sub t1, client id +", "+", func(c *corpus) string {
			return c.tok(func(m map[string]any) { m["sub"] = "t1"; m["subname"] = "+" }, nil)
		}, refusedAny},

		// Token kinds: genuine tokens that are not access tokens.
		{"refresh token presented as access token (introspection token_type)", "", func(c *corpus) string {
			return c.idp.opaqueWith("t1", func(m map[string]any) { m["token_type"] = "refresh_token" })
		}, badToken},
		{"refresh token presented as access token (JWT token_type)", "", func(c *corpus) string {
			return c.tok(func(m map[string]any) { m["token_type"] = "refresh_token" }, nil)
		}, badToken},
	}
}

// transport is one way a token reaches the broker.
type transport struct {
	name string
	v5   bool
	opts opts5
}

// transports are the three ways a token reaches the broker.
func transports() []transport {
	return []transport{
		{"v5 password", true, opts5{clean: true}},
		{"v5 OAUTH2-JWT auth data", true, opts5{clean: true, authData: true}},
		{"v3.1.1 password", false, opts5{}},
	}
}

func TestAttackTokenCorpus(t *testing.T) {
	p, other, tr := newIDP(t), newIDP(t), newTrap(t)
	c := &corpus{t: t, idp: p, other: other, trap: tr}
	modes := []struct {
		name string
		mod  []func(*broker.Config)
	}{
		{"jwt+introspection", nil},
		{"jwt only", []func(*broker.Config){jwtOnly}},
	}
	var tried, refused, controls atomic.Int64
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			// Every case comes from one source address, faster than the per-source
			// rate of introspections allows on a quiet machine (0x9F was seen):
			// that limit has tests of its own (limits_test.go); this corpus is
			// about which tokens are refused, and why.
			unrated := func(c *broker.Config) { c.UpstreamValidationRate = -1 }
			e := newEnv(t, p, append([]func(*broker.Config){unrated}, m.mod...)...)
			for _, tc := range tokenCases() {
				token := tc.token(c)
				id := tc.clientID
				if id == "" {
					id = "t1"
				}
				for _, tp := range transports() {
					if tp.opts.authData && token == "" {
						continue // no Authentication Data is the same CONNECT as no password
					}
					name := tc.name + "/" + tp.name
					code := -1
					if tp.v5 {
						r := e.connect5(id, token, tp.opts)
						code = r.code()
						if r.err == nil {
							_ = r.c.Disconnect(&paho.Disconnect{})
						}
					} else {
						rc, cl := connect3(t, e.addr, id, token, true)
						code = int(rc)
						if cl == nil && !connackSeen(rc) {
							code = -1
						}
						if cl != nil {
							cl.Disconnect(10)
						}
					}
					tried.Add(1)
					if tc.want == accepted {
						controls.Add(1)
					}
					if !tc.want.matches(code, tp.v5) {
						t.Errorf("%s: CONNACK %#x, want %s", name, code, tc.want)
						continue
					}
					if tc.want != accepted {
						refused.Add(1)
					}
				}
			}
		})
	}
	if n := tr.hits.Load(); n != 0 {
		t.Errorf("the broker fetched %d URL(s) named in a token header (jku/x5u)", n)
	}
	t.Logf("attack tokens: %d cases, %d connections tried (%d accepted controls), %d attacks refused with the expected code",
		len(tokenCases()), tried.Load(), controls.Load(), refused.Load())
}

// connackSeen tells a v3.1.1 CONNACK return code from paho's code for a connection
// that ended before any CONNACK (packets.ErrNetworkError and the like are > 0x05).
func connackSeen(rc byte) bool { return rc <= 0x05 }
