package introspect

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// TestIntrospectionClientAuthMethods runs every client authentication method against an endpoint that checks the
// credentials the way an authorization server does, and refuses anything else with 401.
func TestIntrospectionClientAuthMethods(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "client.pem")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	signer, err := LoadClientKey(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	const issuer = "https://idp.example/realms/iot"
	var mu sync.Mutex
	seenJTI := map[string]bool{}
	// accepts reports whether the request carries the credentials of method.
	accepts := func(method string, r *http.Request) bool {
		id, secret, basic := r.BasicAuth()
		form := r.PostForm
		switch method {
		case AuthClientSecretBasic:
			return basic && id == "broker" && secret == "s3cret" && form.Get("client_secret") == ""
		case AuthClientSecretPost:
			return !basic && form.Get("client_id") == "broker" && form.Get("client_secret") == "s3cret"
		case AuthPrivateKeyJWT:
			if basic || form.Get("client_assertion_type") != clientAssertionType || form.Get("client_id") != "broker" {
				return false
			}
			jws, err := jose.ParseSigned(form.Get("client_assertion"), []jose.SignatureAlgorithm{jose.ES256})
			if err != nil || jws.Signatures[0].Header.KeyID != "k1" {
				return false
			}
			payload, err := jws.Verify(&key.PublicKey)
			if err != nil {
				return false
			}
			var c struct {
				Iss, Sub, Aud, Jti string
				Exp, Iat           int64
			}
			if json.Unmarshal(payload, &c) != nil || c.Iss != "broker" || c.Sub != "broker" || c.Aud != issuer ||
				c.Jti == "" || c.Exp <= time.Now().Unix() || c.Exp-c.Iat > 300 {
				return false
			}
			mu.Lock()
			defer mu.Unlock()
			if seenJTI[c.Jti] { // a replayed assertion
				return false
			}
			seenJTI[c.Jti] = true
			return true
		case AuthTLSClientAuth:
			return !basic && form.Get("client_id") == "broker" && r.TLS != nil && len(r.TLS.PeerCertificates) == 1
		case AuthBearer:
			return r.Header.Get("Authorization") == "Bearer glewlwyd-access-token" && form.Get("client_id") == ""
		case AuthNone:
			return r.Header.Get("Authorization") == "" && form.Get("client_secret") == "" && form.Get("client_assertion") == ""
		}
		return false
	}
	cert := clientCertificate(t)
	tests := []struct {
		method string
		cfg    IntrospectionConfig
	}{
		{AuthClientSecretBasic, IntrospectionConfig{ClientID: "broker", ClientSecret: "s3cret"}},
		{AuthClientSecretPost, IntrospectionConfig{ClientID: "broker", ClientSecret: "s3cret", AuthMethod: AuthClientSecretPost}},
		{AuthPrivateKeyJWT, IntrospectionConfig{ClientID: "broker", AuthMethod: AuthPrivateKeyJWT, ClientKey: signer, ClientKeyID: "k1"}},
		{AuthTLSClientAuth, IntrospectionConfig{ClientID: "broker", AuthMethod: AuthTLSClientAuth, ClientCertificate: &cert}},
		{AuthBearer, IntrospectionConfig{AuthMethod: AuthBearer, BearerToken: "glewlwyd-access-token"}},
		{AuthNone, IntrospectionConfig{AuthMethod: AuthNone}},
	}
	for _, tt := range tests {
		t.Run(tt.method, func(t *testing.T) {
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.ParseForm() != nil || r.PostForm.Get("token") != "opaque-1" || !accepts(tt.method, r) {
					http.Error(w, `{"error":"invalid_client"}`, http.StatusUnauthorized)
					return
				}
				w.Header().Set("Content-Type", "application/json")
				_, _ = w.Write([]byte(`{"active":true,"sub":"thing-1","scope":"publish","exp":` +
					strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10) + `}`))
			}))
			srv.TLS = &tls.Config{ClientAuth: tls.RequestClientCert}
			srv.StartTLS()
			t.Cleanup(srv.Close)
			cfg := tt.cfg
			cfg.Endpoint, cfg.Issuer = srv.URL+"/introspect", issuer
			// The test server's certificate is self-signed: trust it, and present the client certificate the
			// way NewIntrospection's own client does.
			client := srv.Client()
			withClientCertificate(client, cfg.ClientCertificate)
			cfg.HTTPClient = client
			in := newTestIntrospector(t, cfg)
			for range 2 { // the second request must not replay the first assertion
				tok, err := in.Validate(t.Context(), "opaque-1")
				if err != nil {
					t.Fatalf("%s: %v", tt.method, err)
				}
				if tok.ThingID != "thing-1" {
					t.Errorf("thing %q", tok.ThingID)
				}
			}
			// The same endpoint refuses the other methods' credentials: the check above is not vacuous.
			wrong := IntrospectionConfig{Endpoint: cfg.Endpoint, AuthMethod: AuthNone, HTTPClient: srv.Client()}
			if tt.method == AuthNone {
				wrong = IntrospectionConfig{Endpoint: cfg.Endpoint, AuthMethod: AuthBearer, BearerToken: "x", HTTPClient: srv.Client()}
			}
			_, err := newTestIntrospector(t, wrong).Validate(t.Context(), "opaque-1")
			if r := reasonOf(t, err, ErrUnavailable); r != ReasonUpstreamAuth {
				t.Errorf("wrong credentials: reason %q", r)
			}
		})
	}
}

func TestIntrospectionClientAuthConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  IntrospectionConfig
		want string
	}{
		{"basic without client id", IntrospectionConfig{ClientSecret: "s"}, "AuthMethod client_secret_basic needs ClientID"},
		{"unknown method", IntrospectionConfig{ClientID: "b", AuthMethod: "client_secret_jwt"}, `unsupported AuthMethod "client_secret_jwt"`},
		{"private_key_jwt without key", IntrospectionConfig{ClientID: "b", AuthMethod: AuthPrivateKeyJWT}, "private_key_jwt needs ClientKey"},
		{"tls_client_auth without certificate", IntrospectionConfig{ClientID: "b", AuthMethod: AuthTLSClientAuth}, "tls_client_auth needs ClientCertificate"},
		{"bearer without token", IntrospectionConfig{AuthMethod: AuthBearer}, "bearer needs BearerToken"},
		{"bearer token of two lines", IntrospectionConfig{AuthMethod: AuthBearer, BearerToken: "a\nb"}, "bearer needs BearerToken"},
	}
	for _, tt := range tests {
		tt.cfg.Endpoint = "https://idp.example/introspect"
		if _, err := NewIntrospection(t.Context(), tt.cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.want)
		}
	}
}

// clientCertificate makes a self-signed TLS client certificate.
func clientCertificate(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
