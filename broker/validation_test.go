package broker

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"

	"imb/authz"
	"imb/internal/issuer"
)

func mustPolicy(t *testing.T) *authz.Policy {
	t.Helper()
	p, err := authz.Parse("topics.yaml", []byte(policy))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// connectCode connects to b with token as password and returns the CONNACK reason code (-1 without one).
func connectCode(t *testing.T, b *Broker, token string) int {
	t.Helper()
	conn, err := net.Dial("tcp", b.Addr("tcp"))
	if err != nil {
		t.Fatal(err)
	}
	c := paho.NewClient(paho.ClientConfig{Conn: packets.NewThreadSafeConn(conn)})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ack, _ := c.Connect(ctx, &paho.Connect{ClientID: "t1", CleanStart: true, KeepAlive: 30,
		Password: []byte(token), PasswordFlag: true})
	_ = c.Disconnect(&paho.Disconnect{})
	conn.Close()
	// The next call connects as t1 again, perhaps as another principal (an answer without iss where no issuer is
	// configured): wait until this connection is gone, or that one is refused as a live takeover (0x87).
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cl, ok := b.Server().Clients.Get("t1"); !ok || cl.Closed() {
			break
		}
	}
	if ack == nil {
		return -1
	}
	return int(ack.ReasonCode)
}

// TestIntrospectModes runs every introspection mode through the real broker and checks that Check reports the
// mode the broker then runs: which tokens go upstream, which are validated locally, which are refused, and the
// issuer check on introspection answers.
func TestIntrospectModes(t *testing.T) {
	none := func(*issuer.Issuer, *Config) {}
	tests := []struct {
		name   string
		set    func(*issuer.Issuer, *Config)
		mode   string // what Check must report
		jwtUp  bool   // a JWT is introspected (so its revocation is seen)
		opaque bool   // an opaque token is accepted
		iss    bool   // the issuer is checked on introspection answers
	}{
		{"auto, issuer only", func(_ *issuer.Issuer, c *Config) { c.IntrospectURL, c.ClientID, c.ClientSecret = "", "", "" },
			"(introspect: auto, resolved to never)", false, false, true},
		{"auto, issuer and introspect_url", none, "(introspect: auto, resolved to opaque-only)", false, true, true},
		{"auto, introspect_url only", func(_ *issuer.Issuer, c *Config) { c.Issuer = "" },
			"(introspect: auto, resolved to always)", true, true, false},
		{"auto, issuer and client_id", func(_ *issuer.Issuer, c *Config) { c.IntrospectURL = "" },
			"(introspect: auto, resolved to always)", true, true, true},
		{"always, discovered", func(_ *issuer.Issuer, c *Config) { c.Introspect, c.IntrospectURL = IntrospectAlways, "" },
			"(introspect: always)", true, true, true},
		{"always, explicit endpoint", func(_ *issuer.Issuer, c *Config) { c.Introspect = IntrospectAlways },
			"(introspect: always)", true, true, true},
		{"opaque-only, discovered", func(_ *issuer.Issuer, c *Config) { c.Introspect, c.IntrospectURL = IntrospectOpaqueOnly, "" },
			"(introspect: opaque-only)", false, true, true},
		{"never", func(_ *issuer.Issuer, c *Config) {
			c.Introspect, c.IntrospectURL, c.ClientID, c.ClientSecret = IntrospectNever, "", "", ""
		}, "(introspect: never)", false, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var checked string
			b, iss := startBroker(t, func(c *Config) {
				tt.set(nil, c)
				cc := *c
				s, err := Check(cc)
				if err != nil {
					t.Fatalf("Check: %v", err)
				}
				checked = s
			})
			if !strings.Contains(checked, tt.mode) {
				t.Fatalf("Check says %q, want %q", checked, tt.mode)
			}
			claims := issuer.Claims{"sub": "t1", "scope": "publish"}

			jwt := iss.Mint(claims, time.Hour)
			before := iss.IntrospectCalls()
			if code := connectCode(t, b, jwt); code != 0 {
				t.Fatalf("JWT refused with 0x%02x", code)
			}
			if up := iss.IntrospectCalls() > before; up != tt.jwtUp {
				t.Errorf("JWT introspected: %v, want %v (Check said %q)", up, tt.jwtUp, checked)
			}
			revoked := iss.Mint(claims, time.Hour)
			iss.Revoke(revoked)
			if refused := connectCode(t, b, revoked) == 0x86; refused != tt.jwtUp {
				t.Errorf("revoked JWT refused: %v, want %v", refused, tt.jwtUp)
			}

			if ok := connectCode(t, b, iss.MintOpaque(claims, time.Hour)) == 0; ok != tt.opaque {
				t.Errorf("opaque token accepted: %v, want %v", ok, tt.opaque)
			}
			if !tt.opaque {
				return
			}
			// RFC 7662 makes iss optional: an answer without it speaks for the configured issuer.
			if code := connectCode(t, b, iss.MintOpaque(issuer.Claims{"sub": "t1", "scope": "publish", "iss": nil}, time.Hour)); code != 0 {
				t.Errorf("introspection answer without iss refused with 0x%02x", code)
			}
			other := connectCode(t, b, iss.MintOpaque(issuer.Claims{"sub": "t1", "scope": "publish", "iss": "https://other.example"}, time.Hour))
			if refused := other == 0x86; refused != tt.iss {
				t.Errorf("answer naming another issuer refused: %v (0x%02x), want %v", refused, other, tt.iss)
			}
		})
	}
}

// TestIntrospectModeErrors checks the configurations that cannot work are refused by Check and Start alike.
func TestIntrospectModeErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"unknown mode", Config{Issuer: "https://idp.example", Introspect: "sometimes"}, `introspect "sometimes": want always, opaque-only, never or auto`},
		{"never with an endpoint", Config{Issuer: "https://idp.example", Introspect: IntrospectNever,
			IntrospectURL: "https://idp.example/introspect", ClientID: "b"}, "introspect: never, but introspect_url is set"},
		{"opaque-only without issuer", Config{Introspect: IntrospectOpaqueOnly, IntrospectURL: "https://idp.example/introspect", ClientID: "b"},
			"introspect: opaque-only validates JWTs locally and needs issuer"},
		{"always with a key file", Config{Issuer: "https://idp.example", Introspect: IntrospectAlways, JWKSFile: "k.json",
			IntrospectURL: "https://idp.example/introspect", ClientID: "b"}, "jwks_url and jwks_file would not be used"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Policy = mustPolicy(t)
			if _, err := Check(tt.cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Check: %v, want %q", err, tt.want)
			}
			tt.cfg.MQTTAddr, tt.cfg.AdminAddr = "127.0.0.1:0", "127.0.0.1:0"
			if b, err := Start(context.Background(), tt.cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
				if b != nil {
					_ = b.Close()
				}
				t.Errorf("Start: %v, want %q", err, tt.want)
			}
		})
	}
}

// TestReadyzSaysWhyTokensCannotBeValidated checks that /readyz is not ready, and says why, while the configuration
// cannot validate a token: discovery names no introspection endpoint, or names another issuer.
func TestReadyzSaysWhyTokensCannotBeValidated(t *testing.T) {
	tests := []struct {
		name string
		doc  func(url string) string
		want string
	}{
		{"no introspection_endpoint", func(u string) string { return `{"issuer":"` + u + `","jwks_uri":"` + u + `/jwks"}` },
			"the document names no introspection_endpoint; configure introspect_url"},
		{"another issuer", func(u string) string {
			return `{"issuer":"https://elsewhere.example","introspection_endpoint":"` + u + `/introspect"}`
		}, "document names issuer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var srv *httptest.Server
			srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				_, _ = io.WriteString(w, tt.doc(srv.URL))
			}))
			t.Cleanup(srv.Close)
			b, err := Start(context.Background(), Config{
				MQTTAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", Policy: mustPolicy(t),
				Issuer: srv.URL, Introspect: IntrospectAlways, ClientID: "broker",
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = b.Close() })
			code, body := get(t, "http://"+b.Addr("admin")+"/readyz")
			if code != http.StatusServiceUnavailable || !strings.Contains(body, tt.want) {
				t.Errorf("/readyz %d %q, want 503 saying %q", code, body, tt.want)
			}
		})
	}
}

// TestIntrospectCredentialsChecked checks that Check loads the credentials the authentication method needs.
func TestIntrospectCredentialsChecked(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "bearer")
	if err := os.WriteFile(tokenFile, []byte("tok\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := Config{Issuer: "https://idp.example", IntrospectURL: "https://idp.example/introspect"}
	tests := []struct {
		name string
		mod  func(*Config)
		want string // "" when valid
	}{
		{"bearer needs no client_id", func(c *Config) { c.IntrospectAuthMethod, c.IntrospectBearerTokenFile = "bearer", tokenFile }, ""},
		{"none needs no client_id", func(c *Config) { c.IntrospectAuthMethod = "none" }, ""},
		{"bearer without token file", func(c *Config) { c.IntrospectAuthMethod = "bearer" }, "needs introspect_bearer_token_file"},
		{"bearer token file missing", func(c *Config) {
			c.IntrospectAuthMethod, c.IntrospectBearerTokenFile = "bearer", filepath.Join(dir, "absent")
		}, "introspect_bearer_token_file: open"},
		{"private_key_jwt without key", func(c *Config) { c.IntrospectAuthMethod, c.ClientID = "private_key_jwt", "b" }, "needs introspect_client_key"},
		{"private_key_jwt key not PEM", func(c *Config) {
			c.IntrospectAuthMethod, c.ClientID, c.IntrospectClientKey = "private_key_jwt", "b", tokenFile
		}, "no PEM block"},
		{"tls_client_auth without certificate", func(c *Config) { c.IntrospectAuthMethod, c.ClientID = "tls_client_auth", "b" }, "needs introspect_client_cert"},
		{"basic without client_id", func(c *Config) {}, "introspect_url needs client_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := base
			cfg.Policy = mustPolicy(t)
			tt.mod(&cfg)
			_, err := Check(cfg)
			if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Errorf("Check: %v, want %q", err, tt.want)
			}
		})
	}
}

// TestReloadKeys checks what SIGHUP does to keys: a key the issuer removed is no longer trusted, not even for a
// token validated (and cached) before, and a key it added is known without waiting for a refresh.
func TestReloadKeys(t *testing.T) {
	b, iss := startBroker(t, func(c *Config) {
		c.IntrospectURL, c.ClientID, c.ClientSecret = "", "", ""
		c.JWKSRefreshInterval, c.JWKSUnknownKidMinInterval = time.Hour, time.Hour
	})
	claims := issuer.Claims{"sub": "t1", "scope": "publish"}
	old := iss.Mint(claims, time.Hour)
	if code := connectCode(t, b, old); code != 0 {
		t.Fatalf("token of the first key refused with 0x%02x", code)
	}
	if err := iss.Rotate(); err != nil {
		t.Fatal(err)
	}
	iss.DropOldKeys()
	if code := connectCode(t, b, old); code != 0 {
		t.Fatalf("cached token refused with 0x%02x before the reload", code)
	}
	if err := b.ReloadKeys(context.Background()); err != nil {
		t.Fatal(err)
	}
	if code := connectCode(t, b, old); code != 0x86 {
		t.Errorf("token of the removed key after the reload: 0x%02x, want 0x86", code)
	}
	fetches := iss.JWKSCalls()
	if code := connectCode(t, b, iss.Mint(claims, time.Hour)); code != 0 {
		t.Errorf("token of the added key after the reload: 0x%02x, want success", code)
	}
	if iss.JWKSCalls() != fetches {
		t.Error("the added key was fetched again: the reload should have brought it")
	}
}
