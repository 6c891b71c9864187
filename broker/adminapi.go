package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"slices"
	"time"

	"imb/hooks"
	"imb/introspect"
)

// The administrator's API on the admin listener (docs/revocation.md):
//
//	POST /admin/v1/revocations   {"sub"|"client_id"|"token_sha256": ..., "issuer": ..., "reason": ...}
//	GET  /admin/v1/sessions?sub=ID | ?client_id=ID
//
// Every call carries an access token of the broker's identity provider, validated as a thing's token is, with the
// scope admin_scope names, or comes over HTTPS with a client certificate of admin_client_ca whose name is in
// admin_client_names. Without either the API is off (403, saying how to turn it on); it is never open.

// adminRequestMax bounds a revocation request body.
const adminRequestMax = 16 << 10

// gatherWait is how long a session listing waits for the other nodes of a cluster.
const gatherWait = 500 * time.Millisecond

var hexToken = regexp.MustCompile(`^[0-9a-f]{64}$`)

// adminError answers an API error as RFC 6750 does for bearer tokens: error, error_description.
func adminError(w http.ResponseWriter, code int, errCode, description string) {
	if code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="imb-admin", error=%q`, errCode))
	}
	writeJSON(w, code, map[string]string{"error": errCode, "error_description": description})
}

// adminIdentity is who called the administrator's API, for the audit log.
type adminIdentity struct {
	Subject  string // the token's subject, or the certificate's name
	ClientID string // the token's client, or "mtls"
}

// adminCaller authenticates an API call; it answers the refusal itself and returns ok=false.
func (b *Broker) adminCaller(w http.ResponseWriter, r *http.Request) (adminIdentity, bool) {
	if name, ok := b.adminCertificate(r); ok {
		return adminIdentity{Subject: name, ClientID: "mtls"}, true
	}
	if b.cfg.AdminScope == "" || b.validator == nil {
		if len(b.cfg.AdminClientNames) > 0 {
			adminError(w, http.StatusUnauthorized, "invalid_client",
				"a client certificate of admin_client_ca with a name in admin_client_names is required")
			return adminIdentity{}, false
		}
		adminError(w, http.StatusForbidden, "admin_api_disabled",
			"the administrator's API is off: set admin_scope in imb.yaml to the scope an access token of the broker's "+
				"identity provider must carry to call it, and present such a token as Authorization: Bearer, or "+
				"admin_tls_cert, admin_client_ca and admin_client_names for client certificates (docs/revocation.md)")
		return adminIdentity{}, false
	}
	token, ok := bearer(r)
	if !ok || token == "" {
		adminError(w, http.StatusUnauthorized, "invalid_request",
			"an access token with scope "+b.cfg.AdminScope+" is required as Authorization: Bearer (imb revoke gets one by client credentials)")
		return adminIdentity{}, false
	}
	ctx, cancel := context.WithTimeout(r.Context(), b.cfg.ValidateTimeout)
	defer cancel()
	tok, err := b.validator.Validate(ctx, token)
	switch {
	case errors.Is(err, introspect.ErrUnavailable) || errors.Is(err, introspect.ErrBusy):
		adminError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "the identity provider cannot judge the token now")
		return adminIdentity{}, false
	case err != nil:
		adminError(w, http.StatusUnauthorized, "invalid_token", "the access token is not accepted")
		return adminIdentity{}, false
	case !slices.Contains(tok.Scopes, b.cfg.AdminScope):
		adminError(w, http.StatusForbidden, "insufficient_scope", "the access token lacks scope "+b.cfg.AdminScope)
		return adminIdentity{}, false
	}
	return adminIdentity{Subject: tok.Principal.Subject, ClientID: tok.ClientID}, true
}

// adminCertificate returns the name under which a verified client certificate
// may call the administrator's API: the first of its names (subject common
// name, then DNS, URI and email subject alternative names) that
// admin_client_names lists. The TLS handshake has verified the chain against
// admin_client_ca.
func (b *Broker) adminCertificate(r *http.Request) (string, bool) {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(b.cfg.AdminClientNames) == 0 {
		return "", false
	}
	leaf := r.TLS.VerifiedChains[0][0]
	names := append([]string{leaf.Subject.CommonName}, leaf.DNSNames...)
	for _, u := range leaf.URIs {
		names = append(names, u.String())
	}
	names = append(names, leaf.EmailAddresses...)
	for _, n := range names {
		if n != "" && slices.Contains(b.cfg.AdminClientNames, n) {
			return n, true
		}
	}
	return "", false
}

// revocationRequest is the body of POST /admin/v1/revocations: exactly one of Sub, ClientID and TokenSHA256.
type revocationRequest struct {
	Sub         string `json:"sub"`
	Issuer      string `json:"issuer"` // with sub: only that issuer's subject
	ClientID    string `json:"client_id"`
	TokenSHA256 string `json:"token_sha256"`
	Reason      string `json:"reason"`
}

// match turns the request into what the hook matches sessions by.
func (q revocationRequest) match() (hooks.Match, error) {
	var ms []hooks.Match
	if q.Sub != "" {
		ms = append(ms, hooks.Match{Kind: hooks.MatchSubject, Value: q.Sub, Issuer: q.Issuer})
	}
	if q.ClientID != "" {
		ms = append(ms, hooks.Match{Kind: hooks.MatchClientID, Value: q.ClientID})
	}
	if q.TokenSHA256 != "" {
		if !hexToken.MatchString(q.TokenSHA256) {
			return hooks.Match{}, errors.New("token_sha256 must be the hex SHA-256 of the token (64 lower-case hex digits)")
		}
		ms = append(ms, hooks.Match{Kind: hooks.MatchToken, Value: q.TokenSHA256})
	}
	if len(ms) != 1 {
		return hooks.Match{}, errors.New("give exactly one of sub, client_id and token_sha256")
	}
	if q.Issuer != "" && q.Sub == "" {
		return hooks.Match{}, errors.New("issuer qualifies sub only")
	}
	if len(q.Reason) > 200 {
		return hooks.Match{}, errors.New("reason is longer than 200 bytes")
	}
	return ms[0], nil
}

// serveRevocation is POST /admin/v1/revocations.
func (b *Broker) serveRevocation(w http.ResponseWriter, r *http.Request) {
	caller, ok := b.adminCaller(w, r)
	if !ok {
		return
	}
	var q revocationRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, adminRequestMax))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&q); err != nil {
		adminError(w, http.StatusBadRequest, "invalid_request", "body must be a JSON object with sub, client_id or token_sha256, and reason: "+err.Error())
		return
	}
	m, err := q.match()
	if err != nil {
		adminError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	reason := "revoked by an administrator"
	if q.Reason != "" {
		reason += ": " + q.Reason
	}
	b.cfg.Audit.Warn("administrator's revocation", "event", "admin_revocation", "by", caller.Subject,
		"by_client", caller.ClientID, "match", m.String(), "reason", reason)
	n := b.revoke(m, time.Now(), reason, "")
	writeJSON(w, http.StatusOK, map[string]any{"revoked": m.String(), "node": b.nodeName(), "sessions_ended_here": n,
		"cluster": b.cluster != nil})
}

// sessionRow is one live session and the node it is on.
type sessionRow struct {
	Node string `json:"node"`
	hooks.SessionInfo
}

// sessionsQuery is the question a node asks the others for GET /admin/v1/sessions.
type sessionsQuery struct {
	Kind  string `json:"kind"` // "sessions"
	Match hooks.Match
}

// serveSessions is GET /admin/v1/sessions?sub= (or ?client_id=, or none: every session).
func (b *Broker) serveSessions(w http.ResponseWriter, r *http.Request) {
	if _, ok := b.adminCaller(w, r); !ok {
		return
	}
	var m hooks.Match
	switch q := r.URL.Query(); {
	case q.Get("sub") != "":
		m = hooks.Match{Kind: hooks.MatchSubject, Value: q.Get("sub"), Issuer: q.Get("issuer")}
	case q.Get("client_id") != "":
		m = hooks.Match{Kind: hooks.MatchClientID, Value: q.Get("client_id")}
	}
	rows := b.localSessions(m)
	answered := []string{b.nodeName()}
	if b.cluster != nil {
		question, _ := json.Marshal(sessionsQuery{Kind: "sessions", Match: m})
		answers, err := b.cluster.hook.Gather(r.Context(), question, gatherWait)
		if err != nil {
			b.log.Warn("session listing: the other nodes could not be asked", "error", err)
		}
		for _, a := range answers {
			var part struct {
				Node     string       `json:"node"`
				Sessions []sessionRow `json:"sessions"`
			}
			if json.Unmarshal(a, &part) == nil {
				rows = append(rows, part.Sessions...)
				answered = append(answered, part.Node)
			}
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"sessions": rows, "nodes": answered})
}

// localSessions lists this node's live sessions that m names.
func (b *Broker) localSessions(m hooks.Match) []sessionRow {
	rows := []sessionRow{}
	if b.hook == nil {
		return rows
	}
	for _, s := range b.hook.Sessions(m) {
		rows = append(rows, sessionRow{Node: b.nodeName(), SessionInfo: s})
	}
	return rows
}

// answerQuery answers another node's question (cluster Gather).
func (b *Broker) answerQuery(question []byte) []byte {
	var q sessionsQuery
	if json.Unmarshal(question, &q) != nil || q.Kind != "sessions" {
		return nil
	}
	ans, _ := json.Marshal(map[string]any{"node": b.nodeName(), "sessions": b.localSessions(q.Match)})
	return ans
}

// nodeName is this node's name: the cluster's, else the host name.
func (b *Broker) nodeName() string {
	if b.cfg.Cluster.NodeName != "" {
		return b.cfg.Cluster.NodeName
	}
	host, _ := os.Hostname()
	return host
}
