package broker

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"imb/hooks"
	"imb/internal/issuer"
	"imb/internal/mqtttest"
	"imb/internal/settest"
	"imb/internal/testpki"
	"imb/ssf"
)

type transmitter = settest.Transmitter

func newTransmitter(t testing.TB) *transmitter { return settest.New(t, "imb-broker") }

// push delivers a SET to the broker's receiver.
func push(t testing.TB, adminAddr, set, contentType string) (int, map[string]string) {
	return settest.Push(t, "http://"+adminAddr+"/ssf/events", set, contentType)
}

// startRevocationBroker is a broker validating the test issuer's JWTs locally, with the SET receiver configured
// for tx.
func startRevocationBroker(t *testing.T, tx *transmitter, mod func(*Config)) (*Broker, *issuer.Issuer) {
	return startBroker(t, func(c *Config) {
		c.IntrospectURL, c.ClientID, c.ClientSecret = "", "", ""
		c.SSF = SSFConfig{Issuer: tx.Issuer, JWKSURL: tx.JWKSURL(), Audience: "imb-broker"}
		if mod != nil {
			mod(c)
		}
	})
}

// expectDisconnect waits for DISCONNECT 0x87 on r and returns how long it took.
func expectDisconnect(t *testing.T, r *mqtttest.Raw, start time.Time, within time.Duration) time.Duration {
	t.Helper()
	pk, ok := r.Read(within)
	took := time.Since(start)
	if !ok || pk.FixedHeader.Type != packets.Disconnect || pk.ReasonCode != packets.ErrNotAuthorized.Code {
		t.Fatalf("want DISCONNECT 0x87 within %s, got ok=%v %+v (after %s)", within, ok, pk.FixedHeader, took)
	}
	if pk.Properties.ReasonString == "" {
		t.Error("DISCONNECT without a reason string")
	}
	return took
}

// expectRefused checks that a CONNECT with token is now refused with 0x86, as a token the identity provider
// reports revoked is.
func expectRefused(t *testing.T, addr, clientID, token string) {
	t.Helper()
	r := mqtttest.Dial(t, addr)
	if err := r.Send(mqtttest.ConnectPacket(clientID, token)); err != nil {
		t.Fatal(err)
	}
	ack, ok := r.Read(5 * time.Second)
	if !ok || ack.FixedHeader.Type != packets.Connack || ack.ReasonCode != packets.ErrBadUsernameOrPassword.Code ||
		ack.Properties.ReasonString != "token revoked" {
		t.Fatalf("reconnect with the revoked token: want CONNACK 0x86 token revoked, got ok=%v code %#x %q", ok,
			ack.ReasonCode, ack.Properties.ReasonString)
	}
}

// TestSETRevokes: each revocation event, with each subject format, ends the thing's connection with DISCONNECT
// 0x87 within a second of the push and refuses its token from then on; an unknown event type is accepted and
// changes nothing.
func TestSETRevokes(t *testing.T) {
	tx := newTransmitter(t)
	b, iss := startRevocationBroker(t, tx, nil)
	addr := b.Addr("tcp")
	cases := []struct {
		name  string
		event func(sub, token string) map[string]any
	}{
		{"session-revoked opaque", func(sub, _ string) map[string]any {
			return tx.Claims(ssf.SessionRevoked, map[string]any{"subject": map[string]any{"format": "opaque", "id": sub},
				"reason_admin": map[string]any{"en": "Device sold"}})
		}},
		{"credential-change iss_sub", func(sub, _ string) map[string]any {
			return tx.Claims(ssf.CredentialChange, map[string]any{"subject": map[string]any{"format": "iss_sub",
				"iss": iss.URL(), "sub": sub}, "credential_type": "password", "change_type": "update"})
		}},
		{"account-disabled email", func(sub, _ string) map[string]any {
			return tx.Claims(ssf.AccountDisabled, map[string]any{"subject": map[string]any{"format": "email",
				"email": strings.ToUpper(sub) + "@Example.com"}, "reason": "hijacking"})
		}},
		{"account-purged sub_id", func(sub, _ string) map[string]any {
			c := tx.Claims(ssf.AccountPurged, map[string]any{})
			c["sub_id"] = map[string]any{"format": "iss_sub", "iss": iss.URL(), "sub": sub}
			return c
		}},
		{"token-revoked hash", func(_, token string) map[string]any {
			return tx.Claims(ssf.TokenRevoked, map[string]any{"token_sha256": hooks.TokenHash(token)})
		}},
	}
	var worst time.Duration
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sub := fmt.Sprintf("thing%d", i)
			token := iss.Mint(issuer.Claims{"sub": sub, "scope": "publish", "email": sub + "@example.com"}, time.Hour)
			other := iss.Mint(issuer.Claims{"sub": "bystander" + sub, "scope": "publish"}, time.Hour)
			r := mqtttest.Connect(t, addr, sub, token)
			bystander := mqtttest.Connect(t, addr, "bystander"+sub, other)

			start := time.Now()
			if code, e := push(t, b.Addr("admin"), tx.Sign(t, c.event(sub, token), "secevent+jwt", nil), ssf.MediaType); code != http.StatusAccepted {
				t.Fatalf("push: %d %v", code, e)
			}
			took := expectDisconnect(t, r, start, time.Second)
			worst = max(worst, took)
			t.Logf("SET to DISCONNECT: %s", took)
			expectRefused(t, addr, sub, token)
			if bystander.ClosedWithin(100 * time.Millisecond) {
				t.Fatal("a thing the event does not name was disconnected")
			}
		})
	}
	t.Logf("slowest SET to DISCONNECT: %s", worst)

	// An event type the broker does not act on is accepted (SSF) and changes nothing.
	token := iss.Mint(issuer.Claims{"sub": "calm", "scope": "publish"}, time.Hour)
	r := mqtttest.Connect(t, addr, "calm", token)
	unknown := tx.Claims("https://schemas.openid.net/secevent/caep/event-type/assurance-level-change",
		map[string]any{"subject": map[string]any{"format": "opaque", "id": "calm"}})
	if code, e := push(t, b.Addr("admin"), tx.Sign(t, unknown, "secevent+jwt", nil), ssf.MediaType); code != http.StatusAccepted {
		t.Fatalf("unknown event type: %d %v, want 202", code, e)
	}
	if r.ClosedWithin(200 * time.Millisecond) {
		t.Fatal("an unknown event type disconnected the thing")
	}
}

// TestSETRefused: a SET that is forged, replayed, stale, addressed to another receiver, from another issuer, of
// another type or badly delivered changes nothing and is answered with RFC 8935's 400 and error code.
func TestSETRefused(t *testing.T) {
	tx := newTransmitter(t)
	b, iss := startRevocationBroker(t, tx, nil)
	token := iss.Mint(issuer.Claims{"sub": "victim", "scope": "publish"}, time.Hour)
	r := mqtttest.Connect(t, b.Addr("tcp"), "victim", token)
	revoke := func() map[string]any {
		return tx.Claims(ssf.SessionRevoked, map[string]any{"subject": map[string]any{"format": "opaque", "id": "victim"}})
	}
	forger, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	// A replay: a SET accepted once, sent again. Its first delivery names another thing.
	once := tx.Claims(ssf.SessionRevoked, map[string]any{"subject": map[string]any{"format": "opaque", "id": "nobody"}})
	onceSigned := tx.Sign(t, once, "secevent+jwt", nil)
	if code, e := push(t, b.Addr("admin"), onceSigned, ssf.MediaType); code != http.StatusAccepted {
		t.Fatalf("first delivery: %d %v", code, e)
	}
	// A replay of a SET that names the victim, first delivered before the victim connected, must not end it.
	cases := []struct {
		name, code string
		set        func() (string, string)
	}{
		{"forged signature", ssf.ErrInvalidKey, func() (string, string) {
			return tx.Sign(t, revoke(), "secevent+jwt", forger), ssf.MediaType
		}},
		{"replayed jti", ssf.ErrInvalidRequest, func() (string, string) {
			c := revoke()
			c["jti"] = once["jti"]
			return tx.Sign(t, c, "secevent+jwt", nil), ssf.MediaType
		}},
		{"replayed SET", ssf.ErrInvalidRequest, func() (string, string) { return onceSigned, ssf.MediaType }},
		{"stale iat", ssf.ErrInvalidRequest, func() (string, string) {
			c := revoke()
			c["iat"] = time.Now().Add(-6 * time.Minute).Unix()
			return tx.Sign(t, c, "secevent+jwt", nil), ssf.MediaType
		}},
		{"iat in the future", ssf.ErrInvalidRequest, func() (string, string) {
			c := revoke()
			c["iat"] = time.Now().Add(5 * time.Minute).Unix()
			return tx.Sign(t, c, "secevent+jwt", nil), ssf.MediaType
		}},
		{"wrong audience", ssf.ErrInvalidAudience, func() (string, string) {
			c := revoke()
			c["aud"] = []string{"another-broker"}
			return tx.Sign(t, c, "secevent+jwt", nil), ssf.MediaType
		}},
		{"wrong issuer", ssf.ErrInvalidIssuer, func() (string, string) {
			c := revoke()
			c["iss"] = "https://attacker.test"
			return tx.Sign(t, c, "secevent+jwt", nil), ssf.MediaType
		}},
		{"access token typ", ssf.ErrInvalidRequest, func() (string, string) {
			return tx.Sign(t, revoke(), "JWT", nil), ssf.MediaType
		}},
		{"no jti", ssf.ErrInvalidRequest, func() (string, string) {
			c := revoke()
			delete(c, "jti")
			return tx.Sign(t, c, "secevent+jwt", nil), ssf.MediaType
		}},
		{"unsupported subject format", ssf.ErrInvalidRequest, func() (string, string) {
			c := tx.Claims(ssf.SessionRevoked, map[string]any{"subject": map[string]any{"format": "phone_number", "phone_number": "+1"}})
			return tx.Sign(t, c, "secevent+jwt", nil), ssf.MediaType
		}},
		{"not a JWS", ssf.ErrInvalidRequest, func() (string, string) { return "not.a.set", ssf.MediaType }},
		{"wrong content type", ssf.ErrInvalidRequest, func() (string, string) {
			return tx.Sign(t, revoke(), "secevent+jwt", nil), "application/json"
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			set, ct := c.set()
			code, e := push(t, b.Addr("admin"), set, ct)
			if code != http.StatusBadRequest || e["err"] != c.code || e["description"] == "" {
				t.Fatalf("got %d %v, want 400 with err %s and a description", code, e, c.code)
			}
			if r.ClosedWithin(50 * time.Millisecond) {
				t.Fatal("a refused SET disconnected the thing")
			}
		})
	}
	// Every refusal was counted by its code.
	mfs, err := b.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	counted := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() == "imb_security_events_total" {
			for _, m := range mf.GetMetric() {
				counted[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
			}
		}
	}
	if counted["accepted"] != 1 || counted[ssf.ErrInvalidRequest] < 8 || counted[ssf.ErrInvalidKey] != 1 ||
		counted[ssf.ErrInvalidAudience] != 1 || counted[ssf.ErrInvalidIssuer] != 1 {
		t.Errorf("imb_security_events_total: %v", counted)
	}
	// The victim is still connected and its token still good.
	mqtttest.Connect(t, b.Addr("tcp"), "victim-2", iss.Mint(issuer.Claims{"sub": "victim-2"}, time.Hour))
}

// TestSETClaimsChange: a token-claims-change event recompiles the grants of the live session at once: a scope
// taken away stops the publishes it allowed.
func TestSETClaimsChange(t *testing.T) {
	tx := newTransmitter(t)
	b, iss := startRevocationBroker(t, tx, nil)
	token := iss.Mint(issuer.Claims{"sub": "t1", "scope": "publish"}, time.Hour)
	r := mqtttest.Connect(t, b.Addr("tcp"), "t1", token)
	publish := func(id uint16) byte {
		t.Helper()
		if err := r.Send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1},
			TopicName: "things/t1/telemetry/x", PacketID: id, Payload: []byte("x")}); err != nil {
			t.Fatal(err)
		}
		ack, ok := r.Read(5 * time.Second)
		if !ok || ack.FixedHeader.Type != packets.Puback {
			t.Fatalf("no PUBACK: %+v", ack.FixedHeader)
		}
		return ack.ReasonCode
	}
	if code := publish(1); code != 0 {
		t.Fatalf("before the change: PUBACK %#x", code)
	}
	ev := tx.Claims(ssf.TokenClaimsChange, map[string]any{"subject": map[string]any{"format": "opaque", "id": "t1"},
		"claims": map[string]any{"scope": "read"}})
	if code, e := push(t, b.Addr("admin"), tx.Sign(t, ev, "secevent+jwt", nil), ssf.MediaType); code != http.StatusAccepted {
		t.Fatalf("push: %d %v", code, e)
	}
	if code := publish(2); code != packets.ErrNotAuthorized.Code {
		t.Fatalf("after the scope was taken away: PUBACK %#x, want 0x87", code)
	}
}

// admin calls the administrator's API with token ("" sends none).
func admin(t testing.TB, adminAddr, method, path, token, body string) (int, map[string]any) {
	t.Helper()
	return adminWith(t, http.DefaultClient, "http://"+adminAddr, method, path, token, body)
}

// adminWith is admin through client, to base (scheme and address).
func adminWith(t testing.TB, client *http.Client, base, method, path, token, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("%s %s: %d answer is not JSON: %q", method, path, resp.StatusCode, raw)
	}
	return resp.StatusCode, out
}

// TestAdminAPIOff: without admin_scope the API answers 403 and says how to turn it on, whatever token comes.
func TestAdminAPIOff(t *testing.T) {
	b, iss := startBroker(t, nil)
	tok := iss.Mint(issuer.Claims{"sub": "ops", "scope": "imb:admin"}, time.Hour)
	for _, path := range []string{"/admin/v1/revocations", "/admin/v1/sessions"} {
		method := http.MethodPost
		if strings.HasSuffix(path, "sessions") {
			method = http.MethodGet
		}
		code, body := admin(t, b.Addr("admin"), method, path, tok, `{"sub":"x"}`)
		if code != http.StatusForbidden || body["error"] != "admin_api_disabled" || !strings.Contains(fmt.Sprint(body["error_description"]), "admin_scope") {
			t.Errorf("%s without admin_scope: %d %v", path, code, body)
		}
	}
}

// TestAdminAPI: an administrator's token with the admin scope lists sessions (never a token) and revokes by
// subject, client id and token hash, each ending the thing's connection with DISCONNECT 0x87; callers without the
// scope, without a token or with a forged one are refused and change nothing.
func TestAdminAPI(t *testing.T) {
	b, iss := startBroker(t, func(c *Config) { c.AdminScope = "imb:admin" })
	addr, adm := b.Addr("tcp"), b.Addr("admin")
	good := iss.Mint(issuer.Claims{"sub": "ops", "scope": "imb:admin"}, time.Hour)
	token := iss.Mint(issuer.Claims{"sub": "t1", "scope": "publish"}, time.Hour)
	r := mqtttest.Connect(t, addr, "t1", token)

	refused := []struct {
		name, token string
		code        int
		err         string
	}{
		{"no token", "", http.StatusUnauthorized, "invalid_request"},
		{"forged token", good[:len(good)-4] + "AAAA", http.StatusUnauthorized, "invalid_token"},
		{"without the scope", iss.Mint(issuer.Claims{"sub": "t2", "scope": "publish"}, time.Hour), http.StatusForbidden, "insufficient_scope"},
		{"expired", iss.Mint(issuer.Claims{"sub": "ops", "scope": "imb:admin", "exp": time.Now().Add(-time.Minute).Unix()}, time.Hour), http.StatusUnauthorized, "invalid_token"},
	}
	for _, c := range refused {
		code, body := admin(t, adm, http.MethodPost, "/admin/v1/revocations", c.token, `{"sub":"t1"}`)
		if code != c.code || body["error"] != c.err {
			t.Errorf("%s: %d %v, want %d %s", c.name, code, body, c.code, c.err)
		}
		if code, body := admin(t, adm, http.MethodGet, "/admin/v1/sessions?sub=t1", c.token, ""); code != c.code {
			t.Errorf("%s: sessions %d %v, want %d", c.name, code, body, c.code)
		}
	}
	if r.ClosedWithin(50 * time.Millisecond) {
		t.Fatal("a refused call disconnected the thing")
	}
	for _, bad := range []string{`{"sub":"t1","client_id":"t1"}`, `{}`, `{"token_sha256":"ABC"}`, `{"sub":"t1","extra":1}`, `not json`} {
		if code, body := admin(t, adm, http.MethodPost, "/admin/v1/revocations", good, bad); code != http.StatusBadRequest || body["error"] != "invalid_request" {
			t.Errorf("body %s: %d %v, want 400 invalid_request", bad, code, body)
		}
	}

	code, body := admin(t, adm, http.MethodGet, "/admin/v1/sessions?sub=t1", good, "")
	sessions, _ := body["sessions"].([]any)
	if code != http.StatusOK || len(sessions) != 1 {
		t.Fatalf("sessions: %d %v", code, body)
	}
	row := sessions[0].(map[string]any)
	if row["client_id"] != "t1" || row["remote"] == "" || row["connected_since"] == "" || row["node"] == "" {
		t.Errorf("session row %v lacks client id, remote, since or node", row)
	}
	raw, _ := json.Marshal(body)
	if strings.Contains(string(raw), token) || strings.Contains(string(raw), hooks.TokenHash(token)) {
		t.Fatal("the session listing shows the token")
	}

	for _, c := range []struct {
		name string
		body func(clientID, token string) string
	}{
		{"sub", func(id, _ string) string { return `{"sub":"` + id + `","reason":"sold"}` }},
		{"client_id", func(id, _ string) string { return `{"client_id":"` + id + `"}` }},
		{"token_sha256", func(_, tok string) string { return `{"token_sha256":"` + hooks.TokenHash(tok) + `"}` }},
	} {
		t.Run(c.name, func(t *testing.T) {
			id := "victim-" + c.name
			tok := iss.Mint(issuer.Claims{"sub": id, "scope": "publish"}, time.Hour)
			r := mqtttest.Connect(t, addr, id, tok)
			start := time.Now()
			code, body := admin(t, adm, http.MethodPost, "/admin/v1/revocations", good, c.body(id, tok))
			if code != http.StatusOK || body["sessions_ended_here"] != float64(1) {
				t.Fatalf("revoke: %d %v", code, body)
			}
			t.Logf("admin call to DISCONNECT: %s", expectDisconnect(t, r, start, time.Second))
			expectRefused(t, addr, id, tok)
		})
	}
	if r.ClosedWithin(50 * time.Millisecond) {
		t.Fatal("revoking other things disconnected t1")
	}
}

// TestAdminAPIClientCertificate: over the HTTPS admin listener a client
// certificate of admin_client_ca whose name admin_client_names lists calls the
// administrator's API without a token; a certificate of that CA with another
// name, one of another CA, or none is refused and changes nothing, while the
// probes answer without a certificate.
func TestAdminAPIClientCertificate(t *testing.T) {
	pki, other := testpki.New(t), testpki.New(t)
	b, iss := startBroker(t, func(c *Config) {
		c.AdminTLSCert, c.AdminTLSKey, c.AdminClientCA = pki.CertFile, pki.KeyFile, pki.CAFile
		c.AdminClientNames = []string{"ops-console"}
	})
	base := "https://" + b.Addr("admin")
	client := func(cert *tls.Certificate) *http.Client {
		conf := &tls.Config{RootCAs: pki.Pool}
		if cert != nil {
			conf.Certificates = []tls.Certificate{*cert}
		}
		return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: conf}}
	}
	ops, stranger, foreign := pki.Client(t, "ops-console"), pki.Client(t, "someone-else"), other.Client(t, "ops-console")
	addr := b.Addr("tcp")
	token := iss.Mint(issuer.Claims{"sub": "t1", "scope": "publish"}, time.Hour)
	r := mqtttest.Connect(t, addr, "t1", token)

	for name, c := range map[string]*http.Client{"no certificate": client(nil), "another name": client(&stranger)} {
		code, body := adminWith(t, c, base, http.MethodPost, "/admin/v1/revocations", "", `{"sub":"t1"}`)
		if code != http.StatusUnauthorized || body["error"] != "invalid_client" {
			t.Errorf("%s: %d %v, want 401 invalid_client", name, code, body)
		}
	}
	// A certificate of another CA does not get through the handshake.
	if _, err := client(&foreign).Get(base + "/admin/v1/sessions"); err == nil {
		t.Error("a certificate of another CA was accepted")
	}
	if resp, err := client(nil).Get(base + "/healthz"); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz without a certificate: %v %v", resp, err)
	}
	if r.ClosedWithin(50 * time.Millisecond) {
		t.Fatal("a refused call disconnected the thing")
	}
	code, body := adminWith(t, client(&ops), base, http.MethodGet, "/admin/v1/sessions?sub=t1", "", "")
	if sessions, _ := body["sessions"].([]any); code != http.StatusOK || len(sessions) != 1 {
		t.Fatalf("sessions with the certificate: %d %v", code, body)
	}
	start := time.Now()
	code, body = adminWith(t, client(&ops), base, http.MethodPost, "/admin/v1/revocations", "", `{"sub":"t1","reason":"lost"}`)
	if code != http.StatusOK || body["sessions_ended_here"] != float64(1) {
		t.Fatalf("revoke with the certificate: %d %v", code, body)
	}
	t.Logf("admin call to DISCONNECT: %s", expectDisconnect(t, r, start, time.Second))
	expectRefused(t, addr, "t1", token)
}

// TestAdminTLSConfigErrors: the admin TLS keys go together, each refusal saying which.
func TestAdminTLSConfigErrors(t *testing.T) {
	for name, c := range map[string]Config{
		"cert without key": {AdminTLSCert: "c.pem"},
		"CA without TLS":   {AdminClientCA: "ca.pem", AdminClientNames: []string{"ops"}},
		"CA without names": {AdminTLSCert: "c.pem", AdminTLSKey: "k.pem", AdminClientCA: "ca.pem"},
		"names without CA": {AdminTLSCert: "c.pem", AdminTLSKey: "k.pem", AdminClientNames: []string{"ops"}},
	} {
		c.AllowAll, c.MQTTAddr = true, "127.0.0.1:0"
		if err := c.fill(); err == nil || !strings.Contains(err.Error(), "admin_") {
			t.Errorf("%s: %v, want an error naming the admin_ keys", name, err)
		}
	}
}

// TestRevokedTokenRefusedAtReauth: a token revoked by hash before it is used is refused at MQTT 5
// re-authentication too (DISCONNECT 0x87), not only at CONNECT.
func TestRevokedTokenRefusedAtReauth(t *testing.T) {
	tx := newTransmitter(t)
	b, iss := startRevocationBroker(t, tx, nil)
	first := iss.Mint(issuer.Claims{"sub": "t1", "scope": "publish"}, time.Hour)
	next := iss.Mint(issuer.Claims{"sub": "t1", "scope": "publish", "jti": "next"}, time.Hour)
	ev := tx.Claims(ssf.TokenRevoked, map[string]any{"token_sha256": hooks.TokenHash(next)})
	if code, e := push(t, b.Addr("admin"), tx.Sign(t, ev, "secevent+jwt", nil), ssf.MediaType); code != http.StatusAccepted {
		t.Fatalf("push: %d %v", code, e)
	}
	r := mqtttest.Dial(t, b.Addr("tcp"))
	cp := mqtttest.ConnectPacket("t1", "")
	cp.Connect.PasswordFlag, cp.Connect.Password = false, nil
	cp.Properties.AuthenticationMethod, cp.Properties.AuthenticationData = hooks.AuthMethod, []byte(first)
	if err := r.Send(cp); err != nil {
		t.Fatal(err)
	}
	if ack, ok := r.Read(5 * time.Second); !ok || ack.ReasonCode != 0 {
		t.Fatalf("connect with the first token: %v %#x", ok, ack.ReasonCode)
	}
	if err := r.Send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Auth}, ReasonCode: packets.CodeReAuthenticate.Code,
		Properties: packets.Properties{AuthenticationMethod: hooks.AuthMethod, AuthenticationData: []byte(next)}}); err != nil {
		t.Fatal(err)
	}
	pk, ok := r.Read(5 * time.Second)
	if !ok || pk.FixedHeader.Type != packets.Disconnect || pk.ReasonCode != packets.ErrNotAuthorized.Code || pk.Properties.ReasonString != "token revoked" {
		t.Fatalf("re-authentication with the revoked token: ok=%v %+v %#x %q", ok, pk.FixedHeader, pk.ReasonCode, pk.Properties.ReasonString)
	}
}
