package amdev

// The events amdev transmits, in the shapes imb's receiver (package ssf) reads.
const (
	eventSessionRevoked  = "https://schemas.openid.net/secevent/caep/event-type/session-revoked"
	eventAccountDisabled = "https://schemas.openid.net/secevent/risc/event-type/account-disabled"
	eventAccountPurged   = "https://schemas.openid.net/secevent/risc/event-type/account-purged"
	// eventTokenRevoked is imb's own event naming one token by the hex SHA-256 of the token as presented
	// (token_sha256), so that neither the SET nor a log carries the token.
	eventTokenRevoked = "urn:imb:secevent:event-type:token-revoked"
)

// tokenRevokedEvent tells the receivers that the access token of hash tokenSHA256 was revoked.
func (s *Server) tokenRevokedEvent(realm, txn, tokenSHA256, reason string) {
	s.transmit(realm, txn, eventTokenRevoked, map[string]any{
		"token_sha256": tokenSHA256, "event_timestamp": s.now().Unix(), "reason_admin": map[string]string{"en": reason},
	})
}

// subjectEvent tells the receivers that the identity id of realm lost its standing (eventType a CAEP or RISC
// event naming a subject): the subject is iss_sub with the realm's token issuer, which the receiver matches
// against the tokens' iss and sub (or subname).
func (s *Server) subjectEvent(realm, txn, eventType, id, reason string) {
	s.transmit(realm, txn, eventType, map[string]any{
		"subject":         map[string]string{"format": "iss_sub", "iss": s.oauthBase(realm), "sub": id},
		"event_timestamp": s.now().Unix(), "reason_admin": map[string]string{"en": reason},
	})
}

// tokenRevoked transmits what /oauth2/token/revoke just revoked: an access token by its hash; a refresh token
// revokes its grant, so the access tokens of the grant that amdev knows (those of a device pairing) are named.
func (s *Server) tokenRevoked(info *tokenInfo, token string) {
	g := info.rec.Grant
	if !info.refresh {
		s.tokenRevokedEvent(g.Realm, "", tokenHash(token), "token revoked at the authorization server")
		return
	}
	if p, ok := s.pairingOf(g); ok {
		txn := randomToken(12)
		for _, t := range p.Tokens {
			s.tokenRevokedEvent(g.Realm, txn, t.Hash, "grant revoked at the authorization server")
		}
	}
}

// identityDeleted transmits account-purged for a deleted identity (thing or user) after revoking the device
// pairings it was part of, whose tokens the identity's subject alone does not name.
func (s *Server) identityDeleted(realm string, ident *identity) {
	txn := randomToken(12)
	s.revokePairingsOf(realm, ident.ID, txn, "identity deleted")
	s.subjectEvent(realm, txn, eventAccountPurged, ident.ID, "identity deleted")
}

// identityStatusChanged transmits account-disabled when an identity's inetUserStatus turns Inactive.
func (s *Server) identityStatusChanged(realm string, before, after *identity) {
	if inactive(after) && (before == nil || !inactive(before)) {
		s.subjectEvent(realm, "", eventAccountDisabled, after.ID, "identity made inactive")
	}
}

// inactive reports whether the identity's status is Inactive, as AM's inetUserStatus says.
func inactive(ident *identity) bool {
	for _, v := range ident.Attributes["inetUserStatus"] {
		if v == "Inactive" {
			return true
		}
	}
	return false
}
