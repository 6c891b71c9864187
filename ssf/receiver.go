package ssf

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"slices"
	"strings"
	"time"

	"imb/introspect"
)

// MediaType is the Content-Type of a pushed SET (RFC 8935 §2).
const MediaType = "application/secevent+jwt"

// Error codes of RFC 8935 §2.4 (the IANA "Security Event Token Error Codes" registry).
const (
	ErrInvalidRequest       = "invalid_request"
	ErrInvalidKey           = "invalid_key"
	ErrInvalidIssuer        = "invalid_issuer"
	ErrInvalidAudience      = "invalid_audience"
	ErrAuthenticationFailed = "authentication_failed"
	ErrAccessDenied         = "access_denied"
)

// DefaultMaxAge is how old a SET's iat may be by default.
const DefaultMaxAge = 5 * time.Minute

// skew is the clock difference tolerated for an iat in the future.
const skew = 30 * time.Second

// maxBody bounds one pushed SET; transmitters' SETs are well under 4 KiB.
const maxBody = 64 << 10

// Config configures a Receiver.
type Config struct {
	Issuer   string // the transmitter's iss (required)
	JWKSURL  string // its key set, or
	JWKSFile string // a local copy
	Audience string // this receiver, as aud must name it (required)
	MaxAge   time.Duration
	// Apply acts on the events of a SET that passed every check, before the 202 is sent; an error (the broker
	// could not act) answers 503 so that the transmitter delivers it again. Events with Ignored set are not
	// passed.
	Apply func(ctx context.Context, set *SET, ev Event) error
	// Observe, if set, hears the outcome of every pushed SET: "accepted", or the error code it was refused with
	// (for a counter; it must return quickly).
	Observe func(result string)
	// MaxReplayEntries bounds the jti remembered (default 100000).
	MaxReplayEntries int
	Logger           *slog.Logger
	Now              func() time.Time
	// HTTPClient fetches the key set (default: introspect's bounded client).
	HTTPClient *http.Client
}

// Receiver is the push endpoint. It is an http.Handler for POST requests.
type Receiver struct {
	cfg  Config
	keys *introspect.JWTValidator
	seen *replayCache
	log  *slog.Logger
}

// New checks cfg and loads the transmitter's keys (a failed first load is logged and retried, as for the issuer's
// keys; until it succeeds every SET answers 503).
func New(ctx context.Context, cfg Config) (*Receiver, error) {
	if cfg.Issuer == "" || cfg.Audience == "" || cfg.Apply == nil {
		return nil, errors.New("ssf: Issuer, Audience and Apply are required")
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = DefaultMaxAge
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxReplayEntries <= 0 {
		cfg.MaxReplayEntries = 100_000
	}
	keys, err := introspect.NewJWT(ctx, introspect.JWTConfig{
		Issuer: cfg.Issuer, JWKSURL: cfg.JWKSURL, JWKSFile: cfg.JWKSFile,
		Types:         []string{"secevent+jwt"},
		MaxTokenBytes: maxBody,
		HTTPClient:    cfg.HTTPClient,
		Logger:        cfg.Logger.With("component", "ssf-jwks"),
		Now:           cfg.Now,
	})
	if err != nil {
		return nil, fmt.Errorf("ssf: transmitter keys: %w", err)
	}
	return &Receiver{cfg: cfg, keys: keys, log: cfg.Logger,
		seen: newReplayCache(cfg.MaxReplayEntries, cfg.MaxAge+skew)}, nil
}

// Remember records jti as received: another node of a cluster accepted the SET, and pushed here it is a replay.
func (r *Receiver) Remember(jti string) { r.seen.add(jti, r.cfg.Now()) }

// Close stops the key set refresh.
func (r *Receiver) Close() error { return r.keys.Close() }

// Rejection is why a SET was refused: an RFC 8935 error code and a description, and the HTTP status (400 for the
// codes of RFC 8935; 503 and 429 when the receiver could not decide or is flooded).
type Rejection struct {
	Status      int
	Code        string
	Description string
}

func (e *Rejection) Error() string { return e.Code + ": " + e.Description }

func reject(code, format string, args ...any) *Rejection {
	return &Rejection{Status: http.StatusBadRequest, Code: code, Description: fmt.Sprintf(format, args...)}
}

// ServeHTTP takes one pushed SET: 202 when it was verified and applied, else the RFC 8935 §2.3 error response.
func (r *Receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, &Rejection{Status: http.StatusMethodNotAllowed, Code: ErrInvalidRequest, Description: "POST a SET"})
		return
	}
	if mt, _, err := mime.ParseMediaType(req.Header.Get("Content-Type")); err != nil || mt != MediaType {
		writeError(w, reject(ErrInvalidRequest, "Content-Type must be %s (RFC 8935 §2)", MediaType))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, maxBody))
	if err != nil {
		writeError(w, reject(ErrInvalidRequest, "body unreadable or larger than %d bytes", maxBody))
		return
	}
	ctx, cancel := context.WithTimeout(req.Context(), 10*time.Second)
	defer cancel()
	set, rej := r.Receive(ctx, strings.TrimSpace(string(body)))
	if r.cfg.Observe != nil {
		if rej != nil {
			r.cfg.Observe(rej.Code)
		} else {
			r.cfg.Observe("accepted")
		}
	}
	if rej != nil {
		r.log.Warn("security event refused", "event", "set_refused", "err", rej.Code, "description", rej.Description,
			"remote", req.RemoteAddr)
		writeError(w, rej)
		return
	}
	r.log.Info("security event applied", "event", "set_applied", "jti", set.ID, "events", len(set.Events))
	w.WriteHeader(http.StatusAccepted)
}

// Receive verifies one SET and applies its events; a nil *Rejection means it was accepted.
func (r *Receiver) Receive(ctx context.Context, token string) (*SET, *Rejection) {
	claims, err := r.keys.VerifyClaims(ctx, token)
	if err != nil {
		return nil, rejectionFor(err)
	}
	if !audienceHas(claims["aud"], r.cfg.Audience) {
		return nil, reject(ErrInvalidAudience, "aud does not name this receiver (%s)", r.cfg.Audience)
	}
	now := r.cfg.Now()
	set, err := parseSET(claims, now)
	if err != nil {
		return nil, reject(ErrInvalidRequest, "%s", strings.TrimPrefix(err.Error(), ErrInvalidRequest+": "))
	}
	switch {
	case set.IssuedAt.Before(now.Add(-r.cfg.MaxAge)):
		return nil, reject(ErrInvalidRequest, "iat is %s old, more than the %s accepted", now.Sub(set.IssuedAt).Round(time.Second), r.cfg.MaxAge)
	case set.IssuedAt.After(now.Add(skew)):
		return nil, reject(ErrInvalidRequest, "iat is in the future")
	}
	switch r.seen.add(set.ID, now) {
	case replayed:
		return nil, reject(ErrInvalidRequest, "jti %q was already received", truncate(set.ID, 64))
	case full:
		return nil, &Rejection{Status: http.StatusTooManyRequests, Code: ErrInvalidRequest,
			Description: "too many SETs within max_age to remember their jti; deliver it again later"}
	}
	for _, ev := range set.Events {
		if ev.Ignored {
			r.log.Debug("security event type not acted on: ignored", "type", truncate(ev.Type, 200), "jti", set.ID)
			continue
		}
		if err := r.cfg.Apply(ctx, set, ev); err != nil {
			r.seen.remove(set.ID) // not applied: its next delivery is no replay
			return nil, &Rejection{Status: http.StatusServiceUnavailable, Code: ErrInvalidRequest,
				Description: "event not applied: " + err.Error()}
		}
	}
	return set, nil
}

// rejectionFor maps a verification error to its RFC 8935 code.
func rejectionFor(err error) *Rejection {
	var ie *introspect.Error
	reason := err.Error()
	if errors.As(err, &ie) {
		reason = ie.Reason
	}
	if errors.Is(err, introspect.ErrUnavailable) {
		return &Rejection{Status: http.StatusServiceUnavailable, Code: ErrInvalidKey,
			Description: "the transmitter's keys cannot be loaded now: " + reason}
	}
	switch reason {
	case introspect.ReasonIssuerMismatch:
		return reject(ErrInvalidIssuer, "iss is not the configured transmitter")
	case introspect.ReasonKidMissing, introspect.ReasonKidMalformed, introspect.ReasonKidUnknown,
		introspect.ReasonKeyAlgMismatch, introspect.ReasonKeyTooSmall, introspect.ReasonSignatureLength,
		introspect.ReasonSignatureInvalid, introspect.ReasonAlgNotAllowed, introspect.ReasonHMACNotAllowed,
		introspect.ReasonAlgNone, introspect.ReasonAlgMissing, introspect.ReasonKeyInHeader:
		return reject(ErrInvalidKey, "%s", reason)
	case introspect.ReasonTypMismatch:
		return reject(ErrInvalidRequest, "typ must be secevent+jwt (RFC 8417 §2.3)")
	}
	return reject(ErrInvalidRequest, "not a SET: %s", reason)
}

// audienceHas reports whether aud (a string or an array of strings) holds want.
func audienceHas(aud any, want string) bool {
	switch a := aud.(type) {
	case string:
		return a == want
	case []any:
		return slices.ContainsFunc(a, func(v any) bool { s, _ := v.(string); return s == want })
	}
	return false
}

// writeError writes the RFC 8935 §2.3 error body.
func writeError(w http.ResponseWriter, rej *Rejection) {
	w.Header().Set("Content-Type", "application/json")
	if rej.Status == http.StatusTooManyRequests || rej.Status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "5")
	}
	w.WriteHeader(rej.Status)
	_ = json.NewEncoder(w).Encode(map[string]string{"err": rej.Code, "description": rej.Description})
}
