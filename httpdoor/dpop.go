package httpdoor

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"

	"imb/introspect"
)

// DPoP (RFC 9449): a token whose cnf.jkt names a key is accepted only with a proof, signed by that
// key, for this very request. The door reads cnf.jkt from the JWT access token's payload without
// checking its signature: the broker checks the signature right after (a forged cnf only fails
// there), and a token that is not a JWT cannot be DPoP-bound here (its cnf would only be known to
// introspection). The proof is checked before anything reaches the broker.

// dpopWindow is how far a proof's iat may be from now, either way (§11.1: a short window, the jti
// cache covering it).
const dpopWindow = 60 * time.Second

// maxProofs bounds the jti replay cache. Past it the oldest jti are forgotten before their window
// ends: a replay then needs 100,000 fresh proofs in between, within the same minute.
const maxProofs = 100_000

// errDPoP is a proof that does not prove; its text is the error_description.
var errDPoP = errors.New("invalid DPoP proof")

// replayCache remembers the jti of accepted proofs for the window in which their iat is valid.
type replayCache struct {
	mu   sync.Mutex // makes the check and the record one step: two requests with one jti, one wins
	seen *expirable.LRU[string, struct{}]
}

func newReplayCache() *replayCache {
	return &replayCache{seen: expirable.NewLRU[string, struct{}](maxProofs, nil, 2*dpopWindow)}
}

// first records jti and reports whether it was new.
func (c *replayCache) first(jti string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.seen.Contains(jti) {
		return false
	}
	c.seen.Add(jti, struct{}{})
	return true
}

// boundKey is the thumbprint of the key a JWT access token is bound to: its cnf.jkt, or that of its cnf.jwk (""
// when it has neither, is not a JWT, or names two keys — the broker refuses such a token).
func boundKey(token string) string {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return ""
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return ""
	}
	var c struct {
		Cnf struct {
			JKT string          `json:"jkt"`
			JWK json.RawMessage `json:"jwk"`
		} `json:"cnf"`
	}
	if json.Unmarshal(payload, &c) != nil {
		return ""
	}
	cnf := introspect.Confirmation{JKT: c.Cnf.JKT}
	if len(c.Cnf.JWK) > 0 && string(c.Cnf.JWK) != "null" {
		cnf.JWK = c.Cnf.JWK
	}
	jkt, err := cnf.Thumbprint()
	if err != nil {
		return ""
	}
	return jkt
}

// dpopClaims are the proof's claims (§4.2).
type dpopClaims struct {
	JTI string `json:"jti"`
	HTM string `json:"htm"`
	HTU string `json:"htu"`
	IAT *int64 `json:"iat"`
	ATH string `json:"ath"`
}

// checkProof verifies the DPoP proof of r for token, bound to the key whose thumbprint is jkt.
func checkProof(r *http.Request, token, jkt string, replays *replayCache, now time.Time) error {
	proofs := r.Header.Values("DPoP")
	if len(proofs) != 1 {
		return fmt.Errorf("%w: want exactly one DPoP header", errDPoP)
	}
	c, err := verifyProof(proofs[0], jkt)
	if err != nil {
		return err
	}
	if c.JTI == "" || len(c.JTI) > 256 {
		return fmt.Errorf("%w: no jti", errDPoP)
	}
	if c.HTM != r.Method {
		return fmt.Errorf("%w: htm %q is not %s", errDPoP, c.HTM, r.Method)
	}
	if want := requestURL(r); !sameHTU(c.HTU, want) {
		return fmt.Errorf("%w: htu %q is not %s", errDPoP, c.HTU, want)
	}
	if c.IAT == nil {
		return fmt.Errorf("%w: no iat", errDPoP)
	}
	if d := now.Sub(time.Unix(*c.IAT, 0)); d > dpopWindow || d < -dpopWindow {
		return fmt.Errorf("%w: iat %ds from now, outside ±%ds", errDPoP, int64(-d.Seconds()), int64(dpopWindow.Seconds()))
	}
	sum := sha256.Sum256([]byte(token))
	if subtle.ConstantTimeCompare([]byte(c.ATH), []byte(base64.RawURLEncoding.EncodeToString(sum[:]))) != 1 {
		return fmt.Errorf("%w: ath is not the hash of this access token", errDPoP)
	}
	if !replays.first(c.JTI) {
		return fmt.Errorf("%w: jti already used", errDPoP)
	}
	return nil
}

// verifyProof checks the proof's form and signature and that its key is the token's (jkt); the checks are
// introspect's, shared with the broker's IMB-POP proofs.
func verifyProof(proof, jkt string) (*dpopClaims, error) {
	payload, err := (&introspect.Confirmation{JKT: jkt}).VerifyProof(proof, "dpop+jwt")
	if err != nil {
		return nil, fmt.Errorf("%w: %s", errDPoP, strings.TrimPrefix(err.Error(), introspect.ErrProof.Error()+": "))
	}
	var c dpopClaims
	if err := json.Unmarshal(payload, &c); err != nil {
		return nil, fmt.Errorf("%w: claims are not a JSON object", errDPoP)
	}
	return &c, nil
}

// requestURL is the htu of r: scheme, host and path, without query and fragment (§4.3).
func requestURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + r.URL.EscapedPath()
}

// sameHTU compares an htu with the request's URL, ignoring any query or fragment in the htu and the
// case of scheme and host (RFC 3986 §6.2.2.1).
func sameHTU(htu, want string) bool {
	if i := strings.IndexAny(htu, "?#"); i >= 0 {
		htu = htu[:i]
	}
	hs, hr, ok1 := strings.Cut(htu, "://")
	ws, wr, ok2 := strings.Cut(want, "://")
	if !ok1 || !ok2 || !strings.EqualFold(hs, ws) {
		return false
	}
	hh, hp, _ := strings.Cut(hr, "/")
	wh, wp, _ := strings.Cut(wr, "/")
	return strings.EqualFold(hh, wh) && hp == wp
}
