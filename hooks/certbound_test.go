package hooks_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"imb/broker"
	"imb/internal/issuer"
	"imb/internal/testpki"
)

// TestCertificateBoundTokens: a token carrying cnf.x5t#S256 (RFC 8705) is accepted only on a TLS connection whose
// client certificate has that thumbprint, at CONNECT, at re-authentication and at the HTTPS door.
func TestCertificateBoundTokens(t *testing.T) {
	pki := testpki.New(t)
	e := newEnv(t, func(c *broker.Config) {
		c.TLSAddr, c.HTTPSAddr = "127.0.0.1:0", "127.0.0.1:0"
		c.TLSCert, c.TLSKey, c.TLSClientCA = pki.CertFile, pki.KeyFile, pki.CAFile
	})
	certA, certB := pki.Client(t, "cb-1"), pki.Client(t, "cb-1")
	x5t := testpki.Thumbprint
	boundTo := func(sub string, cert tls.Certificate) string {
		return e.iss.Mint(issuer.Claims{"sub": sub, "scope": []string{"publish"}, "cnf": map[string]any{"x5t#S256": x5t(cert)}}, time.Hour)
	}
	tlsDial := func(cert tls.Certificate) func() (net.Conn, error) {
		return func() (net.Conn, error) { return tls.Dial("tcp", e.b.Addr("tls"), pki.ClientConfig(cert)) }
	}

	cases := []struct {
		name  string
		token string
		o     v5opts
		want  int
	}{
		{"its certificate", boundTo("cb-1", certA), v5opts{dial: tlsDial(certA), authMethod: true}, 0},
		{"another certificate of the same CA", boundTo("cb-1", certA), v5opts{dial: tlsDial(certB)}, 0x86},
		{"no TLS", boundTo("cb-1", certA), v5opts{}, 0x86},
		{"introspected, its certificate", e.iss.MintOpaque(issuer.Claims{"sub": "cb-1", "scope": []string{"publish"},
			"cnf": map[string]any{"x5t#S256": x5t(certA)}}, time.Hour), v5opts{dial: tlsDial(certA)}, 0},
		{"introspected, another certificate", e.iss.MintOpaque(issuer.Claims{"sub": "cb-1", "scope": []string{"publish"},
			"cnf": map[string]any{"x5t#S256": x5t(certA)}}, time.Hour), v5opts{dial: tlsDial(certB)}, 0x86},
		{"bearer token on the TLS listener", e.jwt("cb-1", "publish"), v5opts{dial: tlsDial(certB)}, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.o.clean = true
			r := e.connect5("cb-1", c.token, c.o)
			if r.code() != c.want {
				t.Fatalf("CONNACK %#x (%v), want %#x", r.code(), r.err, c.want)
			}
			if c.want == 0 {
				_ = r.c.Disconnect(&paho.Disconnect{})
				waitFor(t, "disconnect", func() bool { return e.b.Server().Clients.Len() == 0 })
			}
		})
	}

	t.Run("re-authentication", func(t *testing.T) {
		r := e.connect5("cb-1", boundTo("cb-1", certA), v5opts{dial: tlsDial(certA), authMethod: true, clean: true})
		if r.code() != 0 {
			t.Fatalf("connect: %#x %v", r.code(), r.err)
		}
		reauth := func(tok string) *paho.AuthResponse {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			resp, err := r.c.Authenticate(ctx, &paho.Auth{ReasonCode: 0x19,
				Properties: &paho.AuthProperties{AuthMethod: "OAUTH2-JWT", AuthData: []byte(tok)}})
			if err != nil {
				t.Fatal(err)
			}
			return resp
		}
		if resp := reauth(boundTo("cb-1", certA)); !resp.Success {
			t.Fatalf("re-auth with a token bound to the connection's certificate: %#x", resp.ReasonCode)
		}
		if resp := reauth(boundTo("cb-1", certB)); resp.Success || resp.ReasonCode != 0x87 {
			t.Fatalf("re-auth with a token bound to another certificate: success=%v %#x, want 0x87", resp.Success, resp.ReasonCode)
		}
	})

	t.Run("HTTPS door", func(t *testing.T) {
		post := func(cert tls.Certificate, tok string) int {
			client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
				TLSClientConfig: pki.ClientConfig(cert)}}
			req, _ := http.NewRequest(http.MethodPost, "https://"+e.b.Addr("https")+"/topics/things/cb-1/telemetry/t", bytes.NewReader([]byte("1")))
			req.Header.Set("Authorization", "Bearer "+tok)
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_ = resp.Body.Close()
			return resp.StatusCode
		}
		if got := post(certA, boundTo("cb-1", certA)); got != 200 {
			t.Fatalf("its certificate: %d, want 200", got)
		}
		if got := post(certB, boundTo("cb-1", certA)); got != 401 {
			t.Fatalf("another certificate: %d, want 401", got)
		}
	})
}
