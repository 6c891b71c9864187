package amdev

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseSettings(t *testing.T) {
	good := `
cookieName: myCookie
clients:
  cloud-app:
    secret: s3cret            # only the secret changes; scopes stay
  extra-client:
    secret: x
    scopes: [a, b]
trees:
  reg-tree:
    register:
      jwtRegistrationMethod: SOFTWARE_STATEMENT_WITHOUT_POP
      createIdentity: true
      defaultAttributeValues: {thingType: device}
  JWTAuthWithPoP: null
oauth2:
  tokenFormat: opaque
  accessTokenLifetime: 10m
  tokenEncryptionEnabled: true
certificateAuthorities: [ca.pem]
`
	s, err := ParseSettings("/etc/amdev/amdev.yaml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if s.CookieName != "myCookie" || s.Clients[CloudAppClientID].Secret != "s3cret" || len(s.Clients[CloudAppClientID].Scopes) != 2 ||
		s.Clients["extra-client"] == nil || s.Trees["reg-tree"].Register.Method != MethodSoftwareStatementOnly ||
		s.Trees["JWTAuthWithPoP"] != nil || s.Trees["auth-tree"] == nil || s.OAuth2.TokenFormat != "opaque" || !s.OAuth2.TokenEncryption ||
		time.Duration(s.OAuth2.AccessTokenLifetime) != 10*time.Minute || s.CertificateAuthorities[0] != "/etc/amdev/ca.pem" {
		t.Fatalf("settings: %+v", s)
	}
	bad := []struct{ data, want string }{
		{"cookieName: [", "f.yaml:1:"},
		{"nosuchfield: 1", "f.yaml:1:1: unknown field \"nosuchfield\""},
		{"clients:\n  cloud-app:\n    secrett: x", "f.yaml:3:5: unknown field \"secrett\""},
		{"oauth2:\n  tokenFormat: weird", "f.yaml:2:3: tokenFormat"},
		{"oauth2:\n  accessTokenLifetime: soon", "f.yaml:2:"},
		{"oauth2:\n  tokenEncryptionEnabled: maybe", "f.yaml:2:"},
		{"trees:\n  t:\n    authenticate:\n      jwtAuthenticationMethod: MAGIC", "f.yaml:2:3: authenticate.jwtAuthenticationMethod \"MAGIC\""},
		{"trees:\n  t: {}", "f.yaml:2:3: a tree needs"},
		{"iotService:\n  oauthClientName: nobody", "f.yaml:2:3: client \"nobody\""},
		{"softwarePublishers:\n  p:\n    issuer: x\n    jwks: nope", "f.yaml:4:5: jwks"},
		{"clients:\n  c:\n    secret: x\n    scopes: [a]\n    defaultScopes: [b]", "f.yaml:5:5: default scope"},
		{"users:\n  u:\n    password: p\n    realm: /nowhere", "f.yaml:4:5: realm \"/nowhere\" is not configured"},
	}
	for _, b := range bad {
		_, err := ParseSettings("f.yaml", []byte(b.data))
		if err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("%q: got %v, want %q", b.data, err, b.want)
		}
	}
}

func TestStartWithConfigFileAndOpaqueTokens(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "amdev.yaml")
	if err := os.WriteFile(cfg, []byte("oauth2:\n  tokenFormat: opaque\nclients:\n  cloud-app:\n    secret: other\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv, err := Start(t.Context(), Config{Listen: "127.0.0.1:0", InMemory: true, ConfigFile: cfg})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	e := &env{t: t, srv: srv}
	status, tok := e.form("/oauth2/access_token", basic(CloudAppClientID, "other"), urlValues("grant_type", "client_credentials"))
	if status != 200 || strings.Count(tok["access_token"].(string), ".") != 0 {
		t.Fatalf("opaque token: %d %v", status, tok)
	}
	_, in := e.form("/oauth2/introspect", basic(BrokerClientID, BrokerClientSecret), urlValues("token", tok["access_token"].(string)))
	if in["active"] != true || in["client_id"] != CloudAppClientID {
		t.Fatalf("opaque introspection: %v", in)
	}
	if _, err := Start(t.Context(), Config{Listen: "127.0.0.1:0", InMemory: true, ConfigFile: filepath.Join(dir, "missing.yaml")}); err == nil {
		t.Fatal("missing config file accepted")
	}
	if _, err := Start(t.Context(), Config{Listen: "127.0.0.1:0"}); err == nil {
		t.Fatal("no DataDir and not InMemory accepted")
	}
}
