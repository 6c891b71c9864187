// Package issuer is a small, real OAuth2 token issuer for tests and the load test:
// OIDC discovery, a JWKS, ES256 JWT access tokens, opaque tokens behind an RFC 7662
// introspection endpoint (client-authenticated), revocation, key rotation, and
// fault modes (down, slow, 500, garbage, added latency, error rate). It also issues
// refresh tokens, which introspection reports as such, for tests that must refuse
// them.
//
// It listens on 127.0.0.1 only. It is not an identity server for people to use;
// amdev is.
package issuer

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Mode is how the issuer's HTTP endpoints behave.
type Mode int32

const (
	// Healthy answers normally.
	Healthy Mode = iota
	// Down refuses connections: the listener is closed until the mode changes.
	Down
	// Slow answers after SlowDelay (past any sensible client timeout).
	Slow
	// Error500 answers every request with HTTP 500.
	Error500
	// Garbage answers 200 with a body that is not JSON.
	Garbage
)

// Config configures an Issuer. The zero value is usable.
type Config struct {
	// Addr to listen on; default 127.0.0.1:0.
	Addr string
	// ClientID and ClientSecret authenticate introspection requests (HTTP Basic or
	// form); default "broker" / "broker-secret".
	ClientID, ClientSecret string
	// Audience is the default aud of minted tokens; default "imb".
	Audience string
	// Latency is added to every introspection request (the load test's 20 ms).
	Latency time.Duration
	// ErrorRate is the fraction of introspection requests answered with HTTP 500.
	ErrorRate float64
	// SlowDelay is how long Slow mode waits; default 30 s.
	SlowDelay time.Duration
}

// Issuer is a running token issuer.
type Issuer struct {
	cfg  Config
	addr string
	url  string

	mu      sync.Mutex
	keys    []*signingKey // keys[0] signs; all are published
	opaque  map[string]map[string]any
	revoked map[string]bool
	clients map[string]client // client credentials grant (AddClient)
	ln      net.Listener
	srv     *http.Server

	mode            atomic.Int32
	introspectCalls atomic.Int64
	jwksCalls       atomic.Int64
	tokenSeq        atomic.Int64
}

type signingKey struct {
	kid  string
	priv *ecdsa.PrivateKey
}

// Start listens and serves.
func Start(cfg Config) (*Issuer, error) {
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.ClientID == "" {
		cfg.ClientID, cfg.ClientSecret = "broker", "broker-secret"
	}
	if cfg.Audience == "" {
		cfg.Audience = "imb"
	}
	if cfg.SlowDelay == 0 {
		cfg.SlowDelay = 30 * time.Second
	}
	is := &Issuer{cfg: cfg, opaque: map[string]map[string]any{}, revoked: map[string]bool{},
		clients: map[string]client{}}
	if err := is.Rotate(); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("issuer: listen: %w", err)
	}
	is.addr = ln.Addr().String()
	is.url = "http://" + is.addr
	is.serve(ln)
	return is, nil
}

func (is *Issuer) serve(ln net.Listener) {
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", is.handleDiscovery)
	mux.HandleFunc("/jwks", is.handleJWKS)
	mux.HandleFunc("/introspect", is.handleIntrospect)
	mux.HandleFunc("POST /token", is.handleToken)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	is.mu.Lock()
	is.ln, is.srv = ln, srv
	is.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
}

// URL is the issuer identifier (also its base URL).
func (is *Issuer) URL() string { return is.url }

// JWKSURL is the key set URL.
func (is *Issuer) JWKSURL() string { return is.url + "/jwks" }

// IntrospectURL is the RFC 7662 endpoint.
func (is *Issuer) IntrospectURL() string { return is.url + "/introspect" }

// ClientID and ClientSecret are the credentials the introspection endpoint expects.
func (is *Issuer) ClientID() string     { return is.cfg.ClientID }
func (is *Issuer) ClientSecret() string { return is.cfg.ClientSecret }

// IntrospectCalls counts introspection requests received.
func (is *Issuer) IntrospectCalls() int64 { return is.introspectCalls.Load() }

// JWKSCalls counts key set requests received.
func (is *Issuer) JWKSCalls() int64 { return is.jwksCalls.Load() }

// SetMode changes how the endpoints behave. Down closes the listener; leaving Down
// listens again on the same address.
func (is *Issuer) SetMode(m Mode) error {
	old := Mode(is.mode.Swap(int32(m)))
	if old == m {
		return nil
	}
	if m == Down {
		is.mu.Lock()
		srv := is.srv
		is.mu.Unlock()
		return srv.Close()
	}
	if old == Down {
		ln, err := net.Listen("tcp", is.addr)
		if err != nil {
			return fmt.Errorf("issuer: listen again on %s: %w", is.addr, err)
		}
		is.serve(ln)
	}
	return nil
}

// Close stops the issuer.
func (is *Issuer) Close() error {
	is.mu.Lock()
	srv := is.srv
	is.mu.Unlock()
	return srv.Close()
}

// Rotate makes a new signing key; the old ones stay published.
func (is *Issuer) Rotate() error {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	raw := append(pad32(priv.X), pad32(priv.Y)...)
	sum := sha256.Sum256(raw)
	k := &signingKey{kid: hex.EncodeToString(sum[:8]), priv: priv}
	is.mu.Lock()
	is.keys = append([]*signingKey{k}, is.keys...)
	is.mu.Unlock()
	return nil
}

// DropOldKeys unpublishes every key but the current one.
func (is *Issuer) DropOldKeys() {
	is.mu.Lock()
	is.keys = is.keys[:1]
	is.mu.Unlock()
}

// Claims are a token's claims. Mint fills iss, aud, iat, nbf, exp and jti when absent.
type Claims map[string]any

func (is *Issuer) fill(c Claims, ttl time.Duration) Claims {
	out := Claims{}
	for k, v := range c {
		out[k] = v
	}
	now := time.Now()
	if _, ok := out["iss"]; !ok {
		out["iss"] = is.url
	}
	if _, ok := out["aud"]; !ok {
		out["aud"] = is.cfg.Audience
	}
	if _, ok := out["iat"]; !ok {
		out["iat"] = now.Unix()
	}
	if _, ok := out["nbf"]; !ok {
		out["nbf"] = now.Unix()
	}
	if _, ok := out["exp"]; !ok {
		out["exp"] = now.Add(ttl).Unix()
	}
	if _, ok := out["jti"]; !ok {
		out["jti"] = fmt.Sprintf("t%d", is.tokenSeq.Add(1))
	}
	return out
}

// Mint signs an ES256 JWT access token valid for ttl (unless claims set exp).
func (is *Issuer) Mint(c Claims, ttl time.Duration) string {
	is.mu.Lock()
	k := is.keys[0]
	is.mu.Unlock()
	return sign(k, is.fill(c, ttl))
}

// MintOpaque issues an opaque token that only introspection can judge.
func (is *Issuer) MintOpaque(c Claims, ttl time.Duration) string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	tok := base64.RawURLEncoding.EncodeToString(b)
	claims := is.fill(c, ttl)
	is.mu.Lock()
	is.opaque[tok] = claims
	is.mu.Unlock()
	return tok
}

// MintRefresh issues an opaque refresh token: introspection reports it active with
// token_type "refresh_token", as AM does for its refresh tokens.
func (is *Issuer) MintRefresh(c Claims, ttl time.Duration) string {
	rc := Claims{"token_type": "refresh_token"}
	for k, v := range c {
		rc[k] = v
	}
	return is.MintOpaque(rc, ttl)
}

// Revoke makes introspection answer active:false for the token from now on.
func (is *Issuer) Revoke(token string) {
	is.mu.Lock()
	is.revoked[token] = true
	is.mu.Unlock()
}

// MintTyped is Mint with another typ header, such as "at+jwt" for RFC 9068 tokens.
func (is *Issuer) MintTyped(c Claims, ttl time.Duration, typ string) string {
	is.mu.Lock()
	k := is.keys[0]
	is.mu.Unlock()
	return signTyped(k, is.fill(c, ttl), typ)
}

func sign(k *signingKey, claims Claims) string { return signTyped(k, claims, "JWT") }

func signTyped(k *signingKey, claims Claims, typ string) string {
	hdr, _ := json.Marshal(map[string]string{"alg": "ES256", "typ": typ, "kid": k.kid})
	body, _ := json.Marshal(claims)
	input := b64(hdr) + "." + b64(body)
	sum := sha256.Sum256([]byte(input))
	r, s, err := ecdsa.Sign(rand.Reader, k.priv, sum[:])
	if err != nil {
		panic(err) // only fails when the system's randomness does
	}
	return input + "." + b64(append(pad32(r), pad32(s)...))
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func pad32(n *big.Int) []byte {
	out := make([]byte, 32)
	n.FillBytes(out)
	return out
}

// gate applies the fault mode; it reports whether the handler should go on.
func (is *Issuer) gate(w http.ResponseWriter) bool {
	switch Mode(is.mode.Load()) {
	case Slow:
		time.Sleep(is.cfg.SlowDelay)
	case Error500:
		http.Error(w, `{"error":"server_error"}`, http.StatusInternalServerError)
		return false
	case Garbage:
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte("<html>this is not json"))
		return false
	}
	return true
}

func (is *Issuer) handleDiscovery(w http.ResponseWriter, _ *http.Request) {
	if !is.gate(w) {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                 is.url,
		"jwks_uri":               is.JWKSURL(),
		"introspection_endpoint": is.IntrospectURL(),
		"token_endpoint":         is.url + "/token",
	})
}

func (is *Issuer) handleJWKS(w http.ResponseWriter, _ *http.Request) {
	is.jwksCalls.Add(1)
	if !is.gate(w) {
		return
	}
	is.mu.Lock()
	keys := make([]map[string]string, 0, len(is.keys))
	for _, k := range is.keys {
		keys = append(keys, map[string]string{
			"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": k.kid,
			"x": b64(pad32(k.priv.X)), "y": b64(pad32(k.priv.Y)),
		})
	}
	is.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"keys": keys})
}

func (is *Issuer) handleIntrospect(w http.ResponseWriter, r *http.Request) {
	is.introspectCalls.Add(1)
	if is.cfg.Latency > 0 {
		time.Sleep(is.cfg.Latency)
	}
	if !is.gate(w) {
		return
	}
	if is.cfg.ErrorRate > 0 && mrand.Float64() < is.cfg.ErrorRate {
		http.Error(w, `{"error":"server_error"}`, http.StatusInternalServerError)
		return
	}
	if r.Method != http.MethodPost {
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "invalid_request"})
		return
	}
	if err := r.ParseForm(); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request"})
		return
	}
	id, secret, ok := r.BasicAuth()
	if !ok {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	if id != is.cfg.ClientID || secret != is.cfg.ClientSecret {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_client"})
		return
	}
	tok := r.PostForm.Get("token")
	is.mu.Lock()
	claims, known := is.opaque[tok]
	revoked := is.revoked[tok]
	is.mu.Unlock()
	if !known {
		if c, err := is.verifyOwn(tok); err == nil {
			claims, known = c, true
		}
	}
	if !known || revoked {
		writeJSON(w, http.StatusOK, map[string]any{"active": false})
		return
	}
	if exp, ok := claims["exp"].(int64); ok && time.Now().Unix() >= exp {
		writeJSON(w, http.StatusOK, map[string]any{"active": false})
		return
	}
	out := map[string]any{"active": true, "token_type": "Bearer"}
	for k, v := range claims {
		out[k] = v
	}
	writeJSON(w, http.StatusOK, out)
}

// verifyOwn checks a JWT this issuer minted, so that introspection also answers
// for JWTs (as AM does).
func (is *Issuer) verifyOwn(tok string) (Claims, error) {
	parts := splitDots(tok)
	if len(parts) != 3 {
		return nil, errors.New("not a JWT")
	}
	var hdr struct{ Kid string }
	hb, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil || json.Unmarshal(hb, &hdr) != nil {
		return nil, errors.New("bad header")
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || len(sig) != 64 {
		return nil, errors.New("bad signature")
	}
	is.mu.Lock()
	var key *signingKey
	for _, k := range is.keys {
		if k.kid == hdr.Kid {
			key = k
		}
	}
	is.mu.Unlock()
	if key == nil {
		return nil, errors.New("unknown kid")
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if !ecdsa.Verify(&key.priv.PublicKey, sum[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
		return nil, errors.New("bad signature")
	}
	pb, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, err
	}
	var c Claims
	if err := json.Unmarshal(pb, &c); err != nil {
		return nil, err
	}
	if exp, ok := c["exp"].(float64); ok {
		c["exp"] = int64(exp)
	}
	return c, nil
}

func splitDots(s string) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] == '.' {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// client is an OAuth2 client of the client credentials grant.
type client struct{ secret, scope string }

// AddClient registers a client that gets, from the token endpoint by the client credentials grant, a JWT access
// token for itself (sub and client_id its id) with scope.
func (is *Issuer) AddClient(id, secret, scope string) {
	is.mu.Lock()
	defer is.mu.Unlock()
	is.clients[id] = client{secret: secret, scope: scope}
}

// TokenURL is the token endpoint (client credentials grant only).
func (is *Issuer) TokenURL() string { return is.url + "/token" }

// handleToken is the client credentials grant (RFC 6749 §4.4), client authenticated by HTTP Basic or the form.
func (is *Issuer) handleToken(w http.ResponseWriter, r *http.Request) {
	if !is.gate(w) {
		return
	}
	if err := r.ParseForm(); err != nil || r.PostForm.Get("grant_type") != "client_credentials" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "unsupported_grant_type"})
		return
	}
	id, secret, ok := r.BasicAuth()
	if !ok {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	is.mu.Lock()
	c, known := is.clients[id]
	is.mu.Unlock()
	if !known || c.secret != secret {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_client"})
		return
	}
	tok := is.Mint(Claims{"sub": id, "client_id": id, "scope": c.scope}, time.Hour)
	writeJSON(w, http.StatusOK, map[string]any{"access_token": tok, "token_type": "Bearer", "expires_in": 3600, "scope": c.scope})
}
