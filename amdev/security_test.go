package amdev

import (
	"context"
	"net/url"
	"testing"

	"github.com/go-jose/go-jose/v4"
)

// TestThingIntrospectsOnlyItsOwnTokens: the things endpoint answers active
// only for the tokens the session's thing obtained in its own realm (its
// access and refresh tokens, the user tokens of its device-grant requests);
// another thing's token, a client's token and a token of another realm are
// inactive for it, whatever the token format.
func TestThingIntrospectsOnlyItsOwnTokens(t *testing.T) {
	for _, format := range []string{"jwt", "opaque"} {
		t.Run(format, func(t *testing.T) {
			e := startEnv(t, func(s *Settings) { s.OAuth2.TokenFormat = format; s.Realms = []string{"/a"} })
			actor := loggedIn(t, e, newThing(t, "actor", jose.ES256), "auth-tree", nil)
			other := loggedIn(t, e, newThing(t, "other", jose.ES256), "auth-tree", nil)
			_, own := actor.do("POST", accessTokenPath, map[string]any{"scope": []string{"publish"}}, true)
			_, theirs := other.do("POST", accessTokenPath, map[string]any{"scope": []string{"publish"}}, true)
			app, err := e.srv.IssueClientToken(context.Background(), CloudAppClientID, nil)
			if err != nil {
				t.Fatal(err)
			}
			foreign, err := e.srv.issue(grant{Realm: "/a", ClientID: DefaultClientID, Subject: "actor", SubjectType: "usr",
				ThingID: "actor", Scopes: []string{"publish"}, GrantType: grantJWTBearer}, false)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range []struct {
				name, token string
				active      bool
			}{
				{"own access token", own["access_token"].(string), true},
				{"own refresh token", own["refresh_token"].(string), true},
				{"another thing's token", theirs["access_token"].(string), false},
				{"another thing's refresh token", theirs["refresh_token"].(string), false},
				{"a client's token", app, false},
				{"a token of the same id in another realm", foreign.AccessToken, false},
			} {
				status, in := actor.do("POST", introspectPath, map[string]any{"token": c.token}, true)
				if status != 200 || in["active"] != c.active {
					t.Errorf("%s: %d %v, want active %v", c.name, status, in, c.active)
				}
				if !c.active && len(in) != 1 {
					t.Errorf("%s: inactive answer tells more: %v", c.name, in)
				}
			}
			// The broker's introspection client still sees every token.
			for _, tok := range []string{theirs["access_token"].(string), app} {
				if _, in := e.form("/oauth2/introspect", basic(BrokerClientID, BrokerClientSecret), url.Values{"token": {tok}}); in["active"] != true {
					t.Errorf("broker introspection: %v", in)
				}
			}
		})
	}
}
