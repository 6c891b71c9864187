package amdev

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"imb/ssf"
)

// pushedSET is one delivery attempt a test receiver saw, verified against amdev's published key set.
type pushedSET struct {
	raw, contentType, typ string
	claims                map[string]any
}

// setReceiver is an RFC 8935 receiver written for the tests: it fetches amdev's transmitter key set over
// HTTP, verifies each pushed SET with go-jose and answers as answer says for the n-th attempt (from 1).
type setReceiver struct {
	t       *testing.T
	srv     *httptest.Server
	mu      sync.Mutex
	jwksURL string
	got     []pushedSET
	answer  func(n int) (int, string)
	arrived chan pushedSET
}

func newSETReceiver(t *testing.T, answer func(n int) (int, string)) *setReceiver {
	rc := &setReceiver{t: t, answer: answer, arrived: make(chan pushedSET, 64)}
	rc.srv = httptest.NewServer(http.HandlerFunc(rc.serve))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *setReceiver) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	p := pushedSET{raw: string(body), contentType: r.Header.Get("Content-Type")}
	rc.mu.Lock()
	jwksURL := rc.jwksURL
	rc.mu.Unlock()
	var err error
	if p.typ, p.claims, err = verifySET(jwksURL, p.raw); err != nil {
		rc.t.Errorf("pushed SET does not verify: %v", err)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	rc.mu.Lock()
	rc.got = append(rc.got, p)
	n := len(rc.got)
	rc.mu.Unlock()
	rc.arrived <- p
	status, answer := rc.answer(n)
	if answer != "" {
		w.Header().Set("Content-Type", "application/json")
	}
	w.WriteHeader(status)
	_, _ = io.WriteString(w, answer)
}

func (rc *setReceiver) attempts() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.got)
}

func (rc *setReceiver) next(t *testing.T, within time.Duration) pushedSET {
	t.Helper()
	select {
	case p := <-rc.arrived:
		return p
	case <-time.After(within):
		t.Fatalf("no SET pushed within %s", within)
		return pushedSET{}
	}
}

// verifySET checks a compact JWS against the key set at jwksURL and returns its typ and claims.
func verifySET(jwksURL, raw string) (string, map[string]any, error) {
	resp, err := http.Get(jwksURL)
	if err != nil {
		return "", nil, err
	}
	defer resp.Body.Close()
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		return "", nil, err
	}
	obj, err := jose.ParseSigned(raw, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		return "", nil, err
	}
	keys := set.Key(obj.Signatures[0].Header.KeyID)
	if len(keys) != 1 {
		return "", nil, fmt.Errorf("kid %q is not one key of the published set", obj.Signatures[0].Header.KeyID)
	}
	payload, err := obj.Verify(keys[0].Key)
	if err != nil {
		return "", nil, err
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		return "", nil, err
	}
	typ, _ := obj.Signatures[0].Header.ExtraHeaders[jose.HeaderType].(string)
	return typ, claims, nil
}

// revokeAtAM revokes token at /oauth2/token/revoke as the client it was issued to.
func revokeAtAM(t *testing.T, srv *Server, token, clientID, secret string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.Issuer()+"/token/revoke", strings.NewReader(url.Values{"token": {token}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(clientID, secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("revoke: %d", resp.StatusCode)
	}
}

func sha256Hex(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func demoThingToken(t *testing.T, srv *Server, id string) string {
	t.Helper()
	if err := srv.EnsureThing(context.Background(), DemoThing{ID: id}); err != nil {
		t.Fatal(err)
	}
	tok, err := srv.IssueAccessToken(context.Background(), id, "", []string{"publish"})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestTransmitterSignsAndRetries: revoking a token at /oauth2/token/revoke pushes a SET to the receiver of the
// amdev config, signed with the key amdev publishes, typ secevent+jwt, as application/secevent+jwt; answered
// 503 twice it is delivered again, the same SET, until the receiver takes it.
func TestTransmitterSignsAndRetries(t *testing.T) {
	rc := newSETReceiver(t, func(n int) (int, string) {
		if n <= 2 {
			return http.StatusServiceUnavailable, `{"err":"invalid_key","description":"keys not loaded"}`
		}
		return http.StatusAccepted, ""
	})
	e := startEnv(t, func(s *Settings) {
		s.SSFReceivers = []SSFReceiver{{URL: rc.srv.URL + "/ssf/events", Audience: "imb-test"}}
	})
	rc.mu.Lock()
	rc.jwksURL = e.srv.SSFJWKSURL()
	rc.mu.Unlock()
	tok := demoThingToken(t, e.srv, "tx-thing")
	start := time.Now()
	revokeAtAM(t, e.srv, tok, DefaultClientID, DefaultClientSecret)
	first := rc.next(t, 5*time.Second)
	for range 2 {
		if again := rc.next(t, 5*time.Second); again.raw != first.raw {
			t.Fatal("a retry is not the same SET")
		}
	}
	t.Logf("delivered at the third attempt %s after the revocation", time.Since(start))
	if first.typ != "secevent+jwt" || first.contentType != SETMediaType {
		t.Errorf("typ %q, Content-Type %q", first.typ, first.contentType)
	}
	c := first.claims
	iat, _ := c["iat"].(float64)
	if c["iss"] != e.srv.SSFIssuer() || c["aud"] != "imb-test" || c["jti"] == "" || time.Since(time.Unix(int64(iat), 0)) > 10*time.Second {
		t.Errorf("claims: %v", c)
	}
	ev, _ := c["events"].(map[string]any)[eventTokenRevoked].(map[string]any)
	if ev["token_sha256"] != sha256Hex(tok) {
		t.Errorf("token-revoked event %v, want the token's hash", c["events"])
	}
	if strings.Contains(first.raw, tok) || strings.Contains(string(mustJSON(t, c)), tok) {
		t.Error("the SET carries the token")
	}
	time.Sleep(500 * time.Millisecond)
	if n := rc.attempts(); n != 3 {
		t.Errorf("%d attempts, want 3 (accepted at the third)", n)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// syncBuffer is a log sink safe for the transmitter's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestTransmitterDoesNotRetryARefusal: a receiver's 400 is its verdict on the SET: logged with its err, never
// delivered again; the log carries neither the token nor the SET.
func TestTransmitterDoesNotRetryARefusal(t *testing.T) {
	rc := newSETReceiver(t, func(int) (int, string) {
		return http.StatusBadRequest, `{"err":"invalid_audience","description":"aud does not name this receiver"}`
	})
	var logs syncBuffer
	st := DefaultSettings()
	srv, err := Start(context.Background(), Config{Listen: "127.0.0.1:0", InMemory: true, Settings: &st,
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	rc.mu.Lock()
	rc.jwksURL = srv.SSFJWKSURL()
	rc.mu.Unlock()
	if err := srv.AddSSFReceiver(SSFReceiver{URL: rc.srv.URL, Audience: "someone-else"}); err != nil {
		t.Fatal(err)
	}
	tok := demoThingToken(t, srv, "refused-thing")
	revokeAtAM(t, srv, tok, DefaultClientID, DefaultClientSecret)
	set := rc.next(t, 5*time.Second)
	time.Sleep(1500 * time.Millisecond) // retries would have come at 0.2 s, 0.6 s, 1.4 s
	if n := rc.attempts(); n != 1 {
		t.Fatalf("%d attempts after a 400, want 1", n)
	}
	out := logs.String()
	if !strings.Contains(out, "err=invalid_audience") || !strings.Contains(out, "not delivered again") {
		t.Errorf("the refusal is not logged with the receiver's err:\n%s", out)
	}
	if strings.Contains(out, tok) || strings.Contains(out, set.raw) {
		t.Error("the log carries the token or the SET")
	}
}

// TestTransmittedSETsPassImbReceiver: the SETs of each action pass imb's own receiver (package ssf) trusting
// amdev's transmitter, and say what the broker acts on: the token by hash, the subject as iss_sub of the
// token issuer.
func TestTransmittedSETsPassImbReceiver(t *testing.T) {
	e := startEnv(t)
	events := imbReceiver(t, e.srv)
	admin := map[string]string{"iPlanetDirectoryPro": e.adminToken(), "Content-Type": "application/json"}
	users := e.srv.URL() + "/json/realms/root/users/"
	tok := demoThingToken(t, e.srv, "purged-thing")
	for _, tc := range []struct {
		name string
		act  func()
		want ssf.Event
	}{
		{"token revoked at /oauth2/token/revoke", func() { revokeAtAM(t, e.srv, tok, DefaultClientID, DefaultClientSecret) },
			ssf.Event{Type: ssf.TokenRevoked, Token: sha256Hex(tok)}},
		{"thing deleted", func() {
			if status, _ := e.call("DELETE", users+"purged-thing", admin, ""); status != 200 {
				t.Fatalf("delete: %d", status)
			}
		}, ssf.Event{Type: ssf.AccountPurged, Subject: ssf.Subject{Format: ssf.FormatIssSub, Issuer: e.srv.Issuer(), ID: "purged-thing"}}},
		{"user made inactive", func() {
			if status, _ := e.call("PUT", users+DemoUserID, admin, `{"inetUserStatus":["Inactive"]}`); status != 200 {
				t.Fatalf("disable: %d", status)
			}
		}, ssf.Event{Type: ssf.AccountDisabled, Subject: ssf.Subject{Format: ssf.FormatIssSub, Issuer: e.srv.Issuer(), ID: DemoUserID}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.act()
			select {
			case got := <-events:
				if got.Type != tc.want.Type || got.Token != tc.want.Token || got.Subject != tc.want.Subject || got.Reason == "" {
					t.Fatalf("event %+v, want %+v with a reason", got, tc.want)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("no event reached the receiver")
			}
		})
	}
	// Made inactive again: no new event.
	e.call("PUT", users+DemoUserID, admin, `{"inetUserStatus":["Inactive"]}`)
	select {
	case got := <-events:
		t.Fatalf("an unchanged status transmitted %+v", got)
	case <-time.After(300 * time.Millisecond):
	}
}

// imbReceiver is imb's receiver (package ssf) trusting srv's transmitter, added to srv at run time; the events
// it accepts come out of the channel.
func imbReceiver(t *testing.T, srv *Server) <-chan ssf.Event {
	t.Helper()
	events := make(chan ssf.Event, 16)
	recv, err := ssf.New(context.Background(), ssf.Config{Issuer: srv.SSFIssuer(), JWKSURL: srv.SSFJWKSURL(),
		Audience: "imb-test", Logger: discard(),
		Apply: func(_ context.Context, _ *ssf.SET, ev ssf.Event) error { events <- ev; return nil }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = recv.Close() })
	hs := httptest.NewServer(recv)
	t.Cleanup(hs.Close)
	if err := srv.AddSSFReceiver(SSFReceiver{URL: hs.URL, Audience: "imb-test"}); err != nil {
		t.Fatal(err)
	}
	return events
}

func TestSSFReceiversConfig(t *testing.T) {
	s, err := ParseSettings("am.yaml", []byte("ssfReceivers:\n  - url: https://imb.example.com/ssf/events\n    audience: https://imb.example.com\n"))
	if err != nil || len(s.SSFReceivers) != 1 || s.SSFReceivers[0].Audience != "https://imb.example.com" {
		t.Fatalf("%v %+v", err, s.SSFReceivers)
	}
	for _, bad := range []string{
		"ssfReceivers:\n  - url: imb.example.com/ssf\n    audience: x\n",
		"ssfReceivers:\n  - url: https://imb.example.com/ssf/events\n",
		"ssfReceivers:\n  - url: https://imb.example.com/ssf/events\n    audience: x\n    realm: \"no-slash\"\n",
		"ssfReceivers:\n  - url: https://imb.example.com/ssf/events\n    audience: x\n    secret: y\n",
	} {
		if _, err := ParseSettings("am.yaml", []byte(bad)); err == nil || !strings.HasPrefix(err.Error(), "am.yaml:") {
			t.Errorf("%q: %v, want an error naming the file and line", bad, err)
		}
	}
}
