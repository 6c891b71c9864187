package hooks

import (
	"log/slog"
	"strconv"
	"testing"
	"time"

	"imb/authz"
)

// TestRevocationList: what a remembered revocation refuses, by kind, by the token's iat, and until when.
func TestRevocationList(t *testing.T) {
	at := time.Unix(1_700_000_000, 0)
	id := func(iat time.Time) *identity {
		return &identity{tokenHash: "h1", sub: "(usr!t1)", issuer: "https://idp", issuedAt: iat,
			subject: authz.Subject{ID: "t1", Claims: map[string]any{"email": "T1@Example.com"}}}
	}
	before, justAfter, later := at.Add(-time.Minute), at.Add(10*time.Second), at.Add(time.Minute)
	for _, c := range []struct {
		name    string
		m       Match
		id      *identity
		client  string
		now     time.Time
		refused bool
	}{
		{"token by hash, whatever its iat", Match{Kind: MatchToken, Value: "h1"}, id(later), "t1", at, true},
		{"another token", Match{Kind: MatchToken, Value: "h2"}, id(before), "t1", at, false},
		{"sub as issued, any issuer", Match{Kind: MatchSubject, Value: "(usr!t1)"}, id(before), "t1", at, true},
		{"plain thing id of its issuer", Match{Kind: MatchSubject, Value: "t1", Issuer: "https://idp"}, id(before), "c", at, true},
		{"the same id of another issuer", Match{Kind: MatchSubject, Value: "t1", Issuer: "https://other"}, id(before), "c", at, false},
		{"token issued within the clock skew", Match{Kind: MatchSubject, Value: "t1"}, id(justAfter), "t1", at, true},
		{"token issued after the revocation", Match{Kind: MatchSubject, Value: "t1"}, id(later), "t1", at, false},
		{"token without iat", Match{Kind: MatchSubject, Value: "t1"}, id(time.Time{}), "t1", at, true},
		{"email, other letter case", Match{Kind: MatchEmail, Value: "t1@example.COM"}, id(before), "t1", at, true},
		{"client id", Match{Kind: MatchClientID, Value: "t1:a"}, id(before), "t1:a", at, true},
		{"another client id", Match{Kind: MatchClientID, Value: "t1:a"}, id(before), "t1:b", at, false},
		{"after the retention", Match{Kind: MatchToken, Value: "h1"}, id(before), "t1", at.Add(25 * time.Hour), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			var l revocationList
			key := c.m
			if key.Kind == MatchEmail {
				key.Value = "t1@example.com" // as Revoke stores it
			}
			l.add(key, at, at.Add(DefaultRevocationRetention), at, slog.New(slog.DiscardHandler))
			if _, got := l.refuses(c.id, c.client, c.now); got != c.refused {
				t.Fatalf("refused %v, want %v", got, c.refused)
			}
			if c.m.matches(c.id, c.client) != (c.refused || c.name == "token issued after the revocation" || c.name == "after the retention") {
				t.Fatalf("matches disagrees with the list")
			}
		})
	}
}

// TestRevocationListBound: the list never holds more than maxRevocations; expired entries go first, then the
// oldest.
func TestRevocationListBound(t *testing.T) {
	var l revocationList
	at := time.Unix(1_700_000_000, 0)
	log := slog.New(slog.DiscardHandler)
	for i := range maxRevocations {
		l.add(Match{Kind: MatchClientID, Value: "c" + strconv.Itoa(i)}, at, at.Add(time.Duration(i+1)*time.Second), at, log)
	}
	l.add(Match{Kind: MatchToken, Value: "new"}, at, at.Add(time.Hour), at, log)
	if len(l.entries) != maxRevocations {
		t.Fatalf("%d entries, bound %d", len(l.entries), maxRevocations)
	}
	if _, ok := l.entries[Match{Kind: MatchClientID, Value: "c0"}]; ok {
		t.Fatal("the oldest revocation was kept beyond the bound")
	}
	l.add(Match{Kind: MatchToken, Value: "newer"}, at, at.Add(time.Hour), at.Add(time.Minute), log)
	if len(l.entries) > maxRevocations-50 {
		t.Fatalf("expired entries not dropped: %d", len(l.entries))
	}
}
