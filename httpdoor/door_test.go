package httpdoor_test

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"imb/amdev"
	"imb/httpdoor"
	"imb/internal/mqtttest"
)

// post publishes body to path on the door with Go's net/http.
func post(t testing.TB, base, path, token string, body []byte, hdr map[string][]string) (*http.Response, map[string]any) {
	t.Helper()
	req, err := http.NewRequestWithContext(testContext(t), http.MethodPost, base+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, vs := range hdr {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	data, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatalf("%s %s: body %q is not JSON: %v", resp.Status, path, data, err)
	}
	return resp, out
}

func TestPublishReachesMQTTSubscriber(t *testing.T) {
	am := startAM(t, nil, "tv-1")
	b := startBroker(t, brokerConfig(t, am))
	msgs := subscriber(t, am, b.Addr("tcp"), "things/+/telemetry/#")
	base := "http://" + b.Addr("http")
	tok := thingToken(t, am, "tv-1")

	resp, out := post(t, base, "/topics/things/tv-1/telemetry/channel", tok, []byte(`{"channel":7}`), map[string][]string{
		"Content-Type":                 {"application/json"},
		httpdoor.HeaderMessageExpiry:   {"600"},
		httpdoor.HeaderResponseTopic:   {"things/tv-1/commands/reply"},
		httpdoor.HeaderCorrelationData: {base64.StdEncoding.EncodeToString([]byte{0, 1, 2, 0xff})},
		httpdoor.HeaderUserProperty:    {"source=living room", "note=a%3Db"},
	})
	if resp.StatusCode != http.StatusOK || out["confirmed"] != true || out["mqtt_reason_code"] != "0x00" {
		t.Fatalf("publish: %s %v", resp.Status, out)
	}
	m := receive(t, msgs)
	if m.Topic != "things/tv-1/telemetry/channel" || string(m.Payload) != `{"channel":7}` || m.QoS != 1 {
		t.Fatalf("subscriber got %s %q qos %d", m.Topic, m.Payload, m.QoS)
	}
	p := m.Properties
	if p == nil || p.ContentType != "application/json" || p.ResponseTopic != "things/tv-1/commands/reply" ||
		!bytes.Equal(p.CorrelationData, []byte{0, 1, 2, 0xff}) || p.MessageExpiry == nil || *p.MessageExpiry > 600 || *p.MessageExpiry < 590 {
		t.Fatalf("properties not carried: %+v", p)
	}
	if len(p.User) != 2 || p.User[0].Key != "source" || p.User[0].Value != "living room" || p.User[1].Value != "a=b" {
		t.Fatalf("user properties: %+v", p.User)
	}

	// QoS 0 is handed over without a verdict: 202.
	resp, out = post(t, base, "/topics/things/tv-1/telemetry/volume?qos=0", tok, []byte("12"), nil)
	if resp.StatusCode != http.StatusAccepted || out["confirmed"] != false {
		t.Fatalf("qos 0: %s %v", resp.Status, out)
	}
	if m := receive(t, msgs); m.Topic != "things/tv-1/telemetry/volume" || m.QoS != 0 {
		t.Fatalf("qos 0 delivery: %s qos %d", m.Topic, m.QoS)
	}
}

func TestPublishRetained(t *testing.T) {
	am := startAM(t, nil, "tv-2")
	b := startBroker(t, brokerConfig(t, am))
	base := "http://" + b.Addr("http")
	tok := thingToken(t, am, "tv-2")
	if resp, out := post(t, base, "/topics/things/tv-2/state?retain=true", tok, []byte("on"), nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("retained publish: %s %v", resp.Status, out)
	}
	// A subscriber that comes later gets the retained state.
	msgs := subscriber(t, am, b.Addr("tcp"), "things/tv-2/state")
	if m := receive(t, msgs); string(m.Payload) != "on" || !m.Retain {
		t.Fatalf("retained: %q retain=%v", m.Payload, m.Retain)
	}
}

func TestPublishErrors(t *testing.T) {
	am := startAM(t, nil, "tv-3")
	cfg := brokerConfig(t, am)
	cfg.MaxPacketSize = 4096
	b := startBroker(t, cfg)
	msgs := subscriber(t, am, b.Addr("tcp"), "things/+/telemetry/#")
	base := "http://" + b.Addr("http")
	tok := thingToken(t, am, "tv-3")
	tests := []struct {
		name      string
		path      string
		token     string
		body      []byte
		hdr       map[string][]string
		status    int
		errName   string
		challenge string // in WWW-Authenticate
	}{
		{"no token", "/topics/things/tv-3/telemetry/t", "", []byte("1"), nil, 401, "no_token", `Bearer realm="imb"`},
		{"bad token", "/topics/things/tv-3/telemetry/t", "not-a-token", []byte("1"), nil, 401, "bad_token", `error="invalid_token"`},
		{"malformed authorization", "/topics/things/tv-3/telemetry/t", "", []byte("1"),
			map[string][]string{"Authorization": {"Basic dTpw"}}, 401, "invalid_request", `error="invalid_request"`},
		{"another thing's topic", "/topics/things/other/telemetry/t", tok, []byte("1"), nil, 403, "not_authorized", `error="insufficient_scope"`},
		{"firmware is cloud only", "/topics/things/tv-3/firmware/v2", tok, []byte("1"), nil, 403, "not_authorized", `error="insufficient_scope"`},
		{"wildcard +", "/topics/things/+/telemetry/t", tok, []byte("1"), nil, 400, "topic_name_invalid", ""},
		{"wildcard #", "/topics/things/tv-3/telemetry/%23", tok, []byte("1"), nil, 400, "topic_name_invalid", ""},
		{"over max payload", "/topics/things/tv-3/telemetry/t", tok, bytes.Repeat([]byte("x"), 5000), nil, 413, "payload_too_large", ""},
		{"qos 2", "/topics/things/tv-3/telemetry/t?qos=2", tok, []byte("1"), nil, 400, "invalid_request", ""},
		{"unknown query", "/topics/things/tv-3/telemetry/t?retained=1", tok, []byte("1"), nil, 400, "invalid_request", ""},
		{"bad expiry header", "/topics/things/tv-3/telemetry/t", tok, []byte("1"),
			map[string][]string{httpdoor.HeaderMessageExpiry: {"-1"}}, 400, "invalid_request", ""},
		{"bad user property", "/topics/things/tv-3/telemetry/t", tok, []byte("1"),
			map[string][]string{httpdoor.HeaderUserProperty: {"no-equals-sign"}}, 400, "invalid_request", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, out := post(t, base, tt.path, tt.token, tt.body, tt.hdr)
			if resp.StatusCode != tt.status || out["error"] != tt.errName {
				t.Fatalf("%s %v, want %d %s", resp.Status, out, tt.status, tt.errName)
			}
			if d, _ := out["error_description"].(string); d == "" {
				t.Errorf("no error_description: %v", out)
			}
			got := resp.Header.Get("WWW-Authenticate")
			if tt.challenge == "" && got != "" || !strings.Contains(got, tt.challenge) {
				t.Errorf("WWW-Authenticate %q, want %q", got, tt.challenge)
			}
		})
	}
	nothing(t, msgs)

	// Other methods and paths are refused with a JSON body too.
	req, _ := http.NewRequest(http.MethodDelete, base+"/topics/things/tv-3/state", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") == "" {
		t.Fatalf("DELETE: %s", resp.Status)
	}
}

// The identity provider down is 503 with Retry-After: the broker fails closed with CONNACK 0x88.
func TestPublishIdPUnavailable(t *testing.T) {
	am := startAM(t, nil, "tv-4")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String() + "/introspect"
	_ = ln.Close()
	cfg := brokerConfig(t, am)
	cfg.Issuer, cfg.Audience, cfg.IntrospectURL = "", nil, dead
	cfg.ValidateTimeout = 2 * time.Second
	b := startBroker(t, cfg)
	resp, out := post(t, "http://"+b.Addr("http"), "/topics/things/tv-4/telemetry/t", thingToken(t, am, "tv-4"), []byte("1"), nil)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || out["mqtt_reason_code"] != "0x88" {
		t.Fatalf("IdP down: %s Retry-After %q %v", resp.Status, resp.Header.Get("Retry-After"), out)
	}
}

// Over the upstream validation rate of one source address: CONNACK 0x9F, 429 with Retry-After.
func TestPublishRateLimited(t *testing.T) {
	am := startAM(t, nil, "tv-5", "tv-6")
	cfg := brokerConfig(t, am)
	cfg.Introspect = "always"
	cfg.UpstreamValidationRate = 0.5 // a burst of one introspection per source address
	b := startBroker(t, cfg)
	base := "http://" + b.Addr("http")
	if resp, out := post(t, base, "/topics/things/tv-5/telemetry/t", thingToken(t, am, "tv-5"), []byte("1"), nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("first publish: %s %v", resp.Status, out)
	}
	resp, out := post(t, base, "/topics/things/tv-6/telemetry/t", thingToken(t, am, "tv-6"), []byte("1"), nil)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" || out["mqtt_reason_code"] != "0x9f" {
		t.Fatalf("second token from the same address: %s Retry-After %q %v", resp.Status, resp.Header.Get("Retry-After"), out)
	}
}

// sseEvent is one Server-Sent Event.
type sseEvent struct {
	name, data string
}

// readEvents parses an SSE stream into events until it ends.
func readEvents(r io.Reader, out chan<- sseEvent) {
	defer close(out)
	sc := bufio.NewScanner(r)
	var ev sseEvent
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if ev.name != "" || ev.data != "" {
				out <- ev
			}
			ev = sseEvent{}
		case strings.HasPrefix(line, "event: "):
			ev.name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			ev.data += strings.TrimPrefix(line, "data: ")
		}
	}
}

func TestSubscribeSSEEndsAtTokenExpiry(t *testing.T) {
	const lifetime = 3 * time.Second
	am := startAM(t, func(s *amdev.Settings) { s.OAuth2.AccessTokenLifetime = amdev.Duration(lifetime) }, "tv-7")
	b := startBroker(t, brokerConfig(t, am))
	base := "http://" + b.Addr("http")
	tok := thingToken(t, am, "tv-7")
	issued := time.Now()

	req, _ := http.NewRequestWithContext(testContext(t), http.MethodGet, base+"/topics/things/tv-7/commands/%23", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("subscribe: %s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	events := make(chan sseEvent, 16)
	go readEvents(resp.Body, events)

	// The cloud application sends a command over MQTT; it arrives as an event.
	app := cloudApp(t, am, b.Addr("tcp"), nil)
	if _, err := app.Publish(testContext(t), pahoPublish("things/tv-7/commands/channel", "7")); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-events:
		var m struct{ Topic, Payload string }
		if ev.name != "message" || json.Unmarshal([]byte(ev.data), &m) != nil || m.Topic != "things/tv-7/commands/channel" || m.Payload != "7" {
			t.Fatalf("event %+v", ev)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no event for the command")
	}
	// At expiry the broker ends the MQTT subscription: the stream's last event says why, then it closes.
	select {
	case ev := <-events:
		var end struct{ Reason, Mqtt_reason_code string }
		if ev.name != "end" || json.Unmarshal([]byte(ev.data), &end) != nil || end.Reason != "token_expired" {
			t.Fatalf("last event %+v, want end token_expired", ev)
		}
		if since := time.Since(issued); since < lifetime-time.Second {
			t.Fatalf("stream ended after %v, before the token's %v lifetime", since, lifetime)
		}
		t.Logf("stream ended %v after the token was issued (lifetime %v): %s", time.Since(issued).Round(100*time.Millisecond), lifetime, ev.data)
	case <-time.After(lifetime + 15*time.Second):
		t.Fatal("the stream outlived the token")
	}
	select {
	case ev, ok := <-events:
		if ok {
			t.Fatalf("event after the end: %+v", ev)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the stream stayed open after its end event")
	}
}

func TestSubscribeErrors(t *testing.T) {
	am := startAM(t, nil, "tv-8")
	b := startBroker(t, brokerConfig(t, am))
	base := "http://" + b.Addr("http")
	tok := thingToken(t, am, "tv-8")
	tests := []struct {
		name, path, token, accept string
		status                    int
		errName                   string
	}{
		{"another thing's commands", "/topics/things/other/commands/%23", tok, "text/event-stream", 403, "not_authorized"},
		{"bad token", "/topics/things/tv-8/commands/%23", "xyz", "text/event-stream", 401, "bad_token"},
		{"not an event stream", "/topics/things/tv-8/commands/%23", tok, "application/json", 406, "not_acceptable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequestWithContext(testContext(t), http.MethodGet, base+tt.path, nil)
			req.Header.Set("Authorization", "Bearer "+tt.token)
			req.Header.Set("Accept", tt.accept)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var out map[string]any
			_ = json.NewDecoder(resp.Body).Decode(&out)
			if resp.StatusCode != tt.status || out["error"] != tt.errName {
				t.Fatalf("%s %v, want %d %s", resp.Status, out, tt.status, tt.errName)
			}
		})
	}
}

// A door request is a session of its own: the thing's live MQTT connection (client id = thing id,
// the default binding) is not taken over when the thing also publishes over HTTP.
func TestPublishKeepsThingsMQTTSession(t *testing.T) {
	am := startAM(t, nil, "tv-9")
	b := startBroker(t, brokerConfig(t, am))
	tok := thingToken(t, am, "tv-9")
	conn, err := net.Dial("tcp", b.Addr("tcp"))
	if err != nil {
		t.Fatal(err)
	}
	lost := make(chan byte, 1)
	c := paho.NewClient(paho.ClientConfig{Conn: conn, OnServerDisconnect: func(d *paho.Disconnect) { lost <- d.ReasonCode }})
	if _, err := c.Connect(testContext(t), &paho.Connect{ClientID: "tv-9", Password: []byte(tok), PasswordFlag: true,
		KeepAlive: 30, CleanStart: true}); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Disconnect(&paho.Disconnect{}) }()
	if resp, out := post(t, "http://"+b.Addr("http"), "/topics/things/tv-9/telemetry/t", tok, []byte("1"), nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("publish: %s %v", resp.Status, out)
	}
	select {
	case code := <-lost:
		t.Fatalf("the thing's MQTT session was ended with 0x%02x by its HTTP publish", code)
	case <-time.After(300 * time.Millisecond):
	}
	if _, err := c.Publish(testContext(t), pahoPublish("things/tv-9/telemetry/t", "2")); err != nil {
		t.Fatalf("the MQTT session no longer works: %v", err)
	}
}

// Topics reach the broker exactly as written: empty levels and levels named "." are not cleaned
// away or redirected, and percent-encoding is undone once.
func TestPublishTopicsVerbatim(t *testing.T) {
	am := startAM(t, nil, "tv-10")
	b := startBroker(t, brokerConfig(t, am))
	msgs := subscriber(t, am, b.Addr("tcp"), "things/+/telemetry/#")
	base := "http://" + b.Addr("http")
	tok := thingToken(t, am, "tv-10")
	for path, want := range map[string]string{
		"/topics/things/tv-10/telemetry//x":        "things/tv-10/telemetry//x",
		"/topics/things/tv-10/telemetry/./x":       "things/tv-10/telemetry/./x",
		"/topics/things/tv-10/telemetry/a%20b%3Fc": "things/tv-10/telemetry/a b?c",
	} {
		req, _ := http.NewRequest(http.MethodPost, base+path, strings.NewReader("1"))
		req.Header.Set("Authorization", "Bearer "+tok)
		// Opaque sends the path exactly as written, escapes included.
		req.URL.Opaque = "//" + b.Addr("http") + path
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %s", path, resp.Status)
		}
		if m := receive(t, msgs); m.Topic != want {
			t.Fatalf("%s arrived as %q, want %q", path, m.Topic, want)
		}
	}
}

// Many publishes in a row over in-process connections: each packet must reach the broker whole
// (paho writes a packet in several pieces; on a net.Pipe two writers' pieces once interleaved and
// the broker read a malformed PUBLISH after about a hundred requests).
func TestManyPublishesInARow(t *testing.T) {
	am := startAM(t, nil, "tv-11")
	b := startBroker(t, brokerConfig(t, am))
	base := "http://" + b.Addr("http")
	tok := thingToken(t, am, "tv-11")
	for i := range 1000 {
		if resp, out := post(t, base, "/topics/things/tv-11/telemetry/n", tok, []byte("1"), nil); resp.StatusCode != http.StatusOK {
			t.Fatalf("publish %d: %s %v", i, resp.Status, out)
		}
	}
}

// A cloud application's stream ends when its token is revoked: the broker's periodic re-check
// finds it inactive and ends the MQTT subscription with 0x87.
func TestSubscribeSSEEndsAtRevocation(t *testing.T) {
	am := startAM(t, nil)
	cfg := brokerConfig(t, am)
	cfg.Introspect = "always"
	cfg.RevalidateInterval = time.Second
	b := startBroker(t, cfg)
	app, _ := am.CloudAppClient()
	tok, err := am.IssueClientToken(testContext(t), app.ID, app.Scopes)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(testContext(t), http.MethodGet, "http://"+b.Addr("http")+"/topics/things/%2B/telemetry/%23", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("subscribe: %s", resp.Status)
	}
	events := make(chan sseEvent, 16)
	go readEvents(resp.Body, events)

	form := url.Values{"client_id": {app.ID}, "client_secret": {app.Secret}, "token": {tok}}
	rr, err := http.PostForm(am.Issuer()+"/token/revoke", form)
	if err != nil {
		t.Fatal(err)
	}
	rr.Body.Close()
	if rr.StatusCode != http.StatusOK {
		t.Fatalf("revoke: %s", rr.Status)
	}
	revoked := time.Now()
	select {
	case ev := <-events:
		var end struct{ Reason string }
		if ev.name != "end" || json.Unmarshal([]byte(ev.data), &end) != nil || end.Reason != "token_revoked" {
			t.Fatalf("event %+v, want end token_revoked", ev)
		}
		t.Logf("stream ended %v after the revocation: %s", time.Since(revoked).Round(100*time.Millisecond), ev.data)
	case <-time.After(15 * time.Second):
		t.Fatal("the stream outlived its revoked token")
	}
}

// A body trickled in slower than the door's timeout ends the request: a client cannot hold it open.
func TestPublishSlowBody(t *testing.T) {
	am := startAM(t, nil, "tv-12")
	cfg := brokerConfig(t, am)
	cfg.ValidateTimeout = 500 * time.Millisecond // the door's timeout is validate_timeout + 5 s
	b := startBroker(t, cfg)
	conn, err := net.Dial("tcp", b.Addr("http"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	_, _ = io.WriteString(conn, "POST /topics/things/tv-12/telemetry/t HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+
		thingToken(t, am, "tv-12")+"\r\nContent-Length: 100\r\n\r\n1")
	_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	_, err = io.ReadAll(conn) // the door answers 400 or closes; either way the connection ends
	if err != nil {
		t.Fatalf("the connection did not end: %v", err)
	}
	if d := time.Since(start); d < 5*time.Second || d > 15*time.Second {
		t.Fatalf("the slow request ended after %v, want about 5.5 s", d)
	}
}

// TestPublishOverIdentityLimit: the identity's publish limit of topics.yaml holds
// for the HTTP door as for MQTT (each request is a new MQTT session, the limit
// belongs to the identity): the second publish within the second is 429 with
// Retry-After, naming 0x96.
func TestPublishOverIdentityLimit(t *testing.T) {
	am := startAM(t, nil, "tv-lim1")
	cfg := brokerConfig(t, am)
	cfg.PolicyFile = mqtttest.PolicyWith(t, cfg.PolicyFile,
		"limits:\n  - name: slow-tvs\n    subjects: [\"tv-lim*\"]\n    publishes: 1\n    publish_burst: 1\n")
	b := startBroker(t, cfg)
	base := "http://" + b.Addr("http")
	tok := thingToken(t, am, "tv-lim1")
	if resp, out := post(t, base, "/topics/things/tv-lim1/telemetry/t?qos=1", tok, []byte("1"), nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("first publish: %s %v", resp.Status, out)
	}
	resp, out := post(t, base, "/topics/things/tv-lim1/telemetry/t?qos=1", tok, []byte("2"), nil)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" || out["mqtt_reason_code"] != "0x96" {
		t.Fatalf("second publish within the second: %s Retry-After %q %v", resp.Status, resp.Header.Get("Retry-After"), out)
	}
}
