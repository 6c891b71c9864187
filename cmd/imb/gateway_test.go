package main

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"imb/amdev"
	"imb/sdk"
)

func TestGatewayCommandUsage(t *testing.T) {
	dir := t.TempDir()
	notAKey := filepath.Join(dir, "key.pem")
	if err := os.WriteFile(notAKey, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := []string{"gateway", "--url", "http://127.0.0.1:1/am", "--tree", "auth-tree", "--name", "gw"}
	tests := []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"no flags", []string{"gateway"}, exitUsage, "--url is required"},
		{"no key", base, exitUsage, "--key is required"},
		{"bad key file", append(append([]string{}, base...), "--key", notAKey), exitUsage, "--key " + notAKey},
		{"missing key file", append(append([]string{}, base...), "--key", filepath.Join(dir, "none.pem")), exitUsage, "--key"},
		{"unknown flag", []string{"gateway", "--nope"}, exitUsage, "flag provided but not defined"},
		{"help", []string{"gateway", "--help"}, exitOK, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := runIMB(tt.args...)
			if code != tt.code || !strings.Contains(stderr, tt.stderr) {
				t.Fatalf("exit %d stderr %q, want %d containing %q", code, stderr, tt.code, tt.stderr)
			}
		})
	}
}

// TestGatewayCommandServes starts imb gateway's start path against a real amdev with a PEM key file
// and checks the admin endpoints and that a CoAP thing gets through.
func TestGatewayCommandServes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	key, err := sdk.GenerateKey(sdk.ES256)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key.Signer())
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "gateway.key.pem")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	parsed, err := sdk.LoadKeyFile(keyFile, "")
	if err != nil {
		t.Fatal(err)
	}
	jwks, _ := parsed.PublicJWKS()
	s := amdev.DefaultSettings()
	s.Things["cmd-gateway"] = &amdev.Thing{Realm: "/", ThingType: "gateway", ThingKeys: jwks}
	am, err := amdev.Start(ctx, amdev.Config{Listen: "127.0.0.1:0", InMemory: true, Settings: &s, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer am.Close()
	o := &gatewayOptions{url: am.URL(), realm: "/", tree: "auth-tree", name: "cmd-gateway", key: keyFile,
		address: "127.0.0.1:0", adminAddr: "127.0.0.1:0", timeout: 5 * time.Second}
	gctx, gcancel := context.WithCancel(ctx)
	defer gcancel()
	gw, admin, err := startGateway(gctx, o, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("startGateway: %v", err)
	}
	defer gw.Close()
	c, err := sdk.NewClient(ctx, sdk.Config{BaseURL: "coap://" + gw.Addr().String()})
	if err != nil {
		t.Fatalf("SDK through imb gateway: %v", err)
	}
	defer c.Close()
	if c.AMInfo().AccessTokenURL != am.URL()+"/json/things/*?_action=get_access_token&realm=/" {
		t.Fatalf("aminfo through the command's gateway: %+v", c.AMInfo())
	}
	for path, want := range map[string]string{"/healthz": "ok", "/readyz": "ready", "/metrics": `imb_gateway_requests_total{code="Content",route="/aminfo"} 1`} {
		resp, err := http.Get("http://" + admin.Addr().String() + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
			t.Errorf("GET %s: %d, want 200 containing %q:\n%.400s", path, resp.StatusCode, want, body)
		}
	}
}
