package amdev

import (
	"crypto/rand"
	"net/http"
	"slices"
	"time"
)

type deviceStatus int

const (
	devicePending deviceStatus = iota
	deviceApproved
	deviceDenied
)

// deviceCode is one device authorization request (RFC 8628).
type deviceCode struct {
	deviceCode string
	userCode   string
	realm      string
	clientID   string
	thingID    string // the thing that asked through the things endpoint, "" for /oauth2/device/code
	scopes     []string
	expires    time.Time
	interval   time.Duration
	lastPoll   time.Time
	status     deviceStatus
	userID     string
}

// userCodeAlphabet leaves out letters and digits people confuse (0/O, 1/l/I).
const userCodeAlphabet = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789"

func newUserCode() string {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand: " + err.Error())
	}
	for i := range b {
		b[i] = userCodeAlphabet[int(b[i])%len(userCodeAlphabet)]
	}
	return string(b)
}

// startDeviceFlow registers a device authorization request and returns the RFC 8628 §3.2 answer.
func (s *Server) startDeviceFlow(realm, clientID, thingID string, scopes []string) map[string]any {
	prov := s.provider(realm)
	dc := &deviceCode{deviceCode: randomToken(32), realm: realm, clientID: clientID, thingID: thingID,
		scopes: scopes, expires: s.now().Add(time.Duration(prov.DeviceCodeLifetime)), interval: time.Duration(prov.DevicePollInterval)}
	s.mu.Lock()
	for {
		dc.userCode = newUserCode()
		if _, taken := s.userCodes[dc.userCode]; !taken {
			break
		}
	}
	s.deviceCodes[dc.deviceCode] = dc
	s.userCodes[dc.userCode] = dc.deviceCode
	s.mu.Unlock()
	verify := s.oauthBase(realm) + "/device/user"
	return map[string]any{
		"device_code": dc.deviceCode, "user_code": dc.userCode,
		"verification_uri":          verify,
		"verification_uri_complete": verify + "?user_code=" + dc.userCode,
		"expires_in":                int64(time.Duration(prov.DeviceCodeLifetime) / time.Second), "interval": int64(dc.interval / time.Second),
	}
}

// pollDevice answers a device-code poll: the user's grant once approved,
// else authorization_pending, slow_down, authorization_declined or
// expired_token (HTTP 403, detail.error, as AM does on the things endpoint).
func (s *Server) pollDevice(code string, owns func(*deviceCode) bool) (*deviceCode, error) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	dc := s.deviceCodes[code]
	if dc == nil || !owns(dc) {
		return nil, oauthError(http.StatusBadRequest, "invalid_grant", "The provided device code is invalid")
	}
	if !now.Before(dc.expires) {
		return nil, oauthError(http.StatusForbidden, "expired_token", "The device code has expired")
	}
	switch dc.status {
	case deviceDenied:
		delete(s.deviceCodes, code)
		delete(s.userCodes, dc.userCode)
		return nil, oauthError(http.StatusForbidden, "authorization_declined", "The user denied the request")
	case deviceApproved:
		delete(s.deviceCodes, code)
		delete(s.userCodes, dc.userCode)
		return dc, nil
	}
	tooSoon := !dc.lastPoll.IsZero() && now.Sub(dc.lastPoll) < dc.interval
	dc.lastPoll = now
	if tooSoon {
		return nil, oauthError(http.StatusForbidden, "slow_down", "The client is polling too quickly")
	}
	return nil, oauthError(http.StatusForbidden, "authorization_pending", "The user has not yet completed authorization")
}

// decideDevice records a user's decision on a pending request. It reports
// false when no pending request of the realm has that user code: unknown,
// expired and already decided codes alike, which the page answers the same way.
func (s *Server) decideDevice(realm, userCode, userID string, allow bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	dc := s.deviceCodes[s.userCodes[userCode]]
	if dc == nil || dc.realm != realm || !s.now().Before(dc.expires) || dc.status != devicePending {
		return false
	}
	dc.userID = userID
	dc.status = deviceDenied
	if allow {
		dc.status = deviceApproved
	}
	return true
}

func (s *Server) pendingDevice(realm, userCode string) *deviceCode {
	s.mu.Lock()
	defer s.mu.Unlock()
	dc := s.deviceCodes[s.userCodes[userCode]]
	if dc == nil || dc.realm != realm || dc.status != devicePending || !s.now().Before(dc.expires) {
		return nil
	}
	cp := *dc
	cp.scopes = slices.Clone(dc.scopes)
	return &cp
}

// userGrant is the grant of an approved device request: the user's token for the client.
func userGrant(dc *deviceCode) grant {
	return grant{Realm: dc.realm, ClientID: dc.clientID, Subject: dc.userID, SubjectType: "usr", ThingID: dc.thingID,
		Scopes: dc.scopes, GrantType: grantDeviceCode}
}

func (s *Server) thingUserCode(w http.ResponseWriter, ident *identity, body map[string]any) error {
	clientID, _, scopes, err := s.thingScopes(ident, body)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s.startDeviceFlow(ident.Realm, clientID, ident.ID, scopes))
	return nil
}

func (s *Server) thingUserToken(w http.ResponseWriter, ident *identity, body map[string]any) error {
	code, _ := body["device_code"].(string)
	if code == "" {
		return oauthError(http.StatusBadRequest, "invalid_request", "Missing device_code")
	}
	dc, err := s.pollDevice(code, func(d *deviceCode) bool { return d.thingID == ident.ID && d.realm == ident.Realm })
	if err != nil {
		return err
	}
	_, client, err := s.thingClient(ident)
	if err != nil {
		return err
	}
	resp, err := s.issuePaired(userGrant(dc), s.provider(dc.realm).IssueRefreshTokens && slices.Contains(client.GrantTypes, grantRefreshToken))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}
