package gateway

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
)

func TestCoAPCodeTable(t *testing.T) {
	tests := []struct {
		status int
		want   codes.Code
	}{
		{200, codes.Changed}, {201, codes.Changed}, {204, codes.Changed},
		{400, codes.BadRequest}, {401, codes.Unauthorized}, {403, codes.Forbidden}, {404, codes.NotFound},
		{405, codes.MethodNotAllowed}, {406, codes.NotAcceptable}, {412, codes.PreconditionFailed},
		{413, codes.RequestEntityTooLarge}, {415, codes.UnsupportedMediaType}, {500, codes.InternalServerError},
		{501, codes.NotImplemented}, {502, codes.BadGateway}, {503, codes.ServiceUnavailable},
		{504, codes.GatewayTimeout},
		{302, codes.InternalServerError}, {409, codes.InternalServerError}, {429, codes.InternalServerError},
		{599, codes.InternalServerError}, {0, codes.InternalServerError},
	}
	for _, tt := range tests {
		if got := coapCode(tt.status, codes.Changed); got != tt.want {
			t.Errorf("HTTP %d → %v, want %v", tt.status, got, tt.want)
		}
	}
}

func jwsWith(claims string) []byte {
	return []byte("eyJhbGciOiJFUzI1NiJ9." + base64.RawURLEncoding.EncodeToString([]byte(claims)) + ".c2ln")
}

func TestDecodeThingRequest(t *testing.T) {
	tests := []struct {
		name      string
		format    message.MediaType
		payload   []byte
		wantToken string
		wantBody  string
		wantErr   bool
	}{
		{"json", FormatJSON, []byte(`{"token":"t1","payload":"{\"scope\":[\"a\"]}"}`), "t1", `{"scope":["a"]}`, false},
		{"json no payload", FormatJSON, []byte(`{"token":"t1"}`), "t1", "", false},
		{"json no token", FormatJSON, []byte(`{"payload":"{}"}`), "", "", true},
		{"json bad payload", FormatJSON, []byte(`{"token":"t","payload":"{"}`), "", "", true},
		{"json broken", FormatJSON, []byte(`{`), "", "", true},
		{"jose", FormatJOSE, jwsWith(`{"csrf":"sso","scope":["a"]}`), "sso", string(jwsWith(`{"csrf":"sso","scope":["a"]}`)), false},
		{"jose no csrf", FormatJOSE, jwsWith(`{}`), "", "", true},
		{"jose two parts", FormatJOSE, []byte("a.b"), "", "", true},
		{"jose bad base64", FormatJOSE, []byte("a.!!.c"), "", "", true},
		{"text", message.TextPlain, []byte("x"), "", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rb, err := decodeThingRequest(tt.format, tt.payload)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err %v, wantErr %v", err, tt.wantErr)
			}
			if err != nil {
				if !errors.Is(err, errBadRequest) {
					t.Fatalf("error %v does not mark a bad request", err)
				}
				return
			}
			if rb.token != tt.wantToken || string(rb.body) != tt.wantBody {
				t.Fatalf("got token %q body %q", rb.token, rb.body)
			}
		})
	}
}

func TestAuthIDDigest(t *testing.T) {
	sum := sha256.Sum256([]byte("an authId"))
	if got, want := authIDDigest("an authId"), base64.StdEncoding.EncodeToString(sum[:]); got != want {
		t.Fatalf("digest %q, want %q", got, want)
	}
	for _, bad := range []string{"", "AAAA", "%%", base64.RawStdEncoding.EncodeToString(sum[:]), base64.StdEncoding.EncodeToString(sum[:31])} {
		if _, err := parseAuthIDDigest(bad); err == nil {
			t.Errorf("digest %q accepted", bad)
		}
	}
}

func TestAuthCacheExpiry(t *testing.T) {
	now := time.Unix(1000, 0)
	c := newAuthCache(5 * time.Minute)
	c.now = func() time.Time { return now }
	c.put("d", "id")
	if v, ok := c.get("d"); !ok || v != "id" {
		t.Fatalf("get = %q %v", v, ok)
	}
	now = now.Add(5*time.Minute + time.Second)
	if _, ok := c.get("d"); ok {
		t.Fatal("authId kept past its lifetime")
	}
}

func FuzzDecodeThingRequest(f *testing.F) {
	f.Add(uint16(50), []byte(`{"token":"t","payload":"{}"}`))
	f.Add(uint16(11650), jwsWith(`{"csrf":"x"}`))
	f.Add(uint16(11650), []byte("..."))
	f.Fuzz(func(t *testing.T, format uint16, payload []byte) {
		rb, err := decodeThingRequest(message.MediaType(format), payload)
		if err != nil {
			if !errors.Is(err, errBadRequest) {
				t.Fatalf("error %v is not a bad request", err)
			}
			return
		}
		if rb.token == "" {
			t.Fatal("accepted a request without a token")
		}
		if rb.contentType == mediaJSON && rb.body != nil && !json.Valid(rb.body) {
			t.Fatal("forwarding a non-JSON body as JSON")
		}
	})
}

func FuzzCSRFClaim(f *testing.F) {
	f.Add(jwsWith(`{"csrf":"x"}`))
	f.Add([]byte("a.b.c"))
	f.Add(jwsWith(`{"csrf":1}`))
	f.Fuzz(func(t *testing.T, jws []byte) {
		tok, err := csrfClaim(jws)
		if err == nil && tok == "" {
			t.Fatal("empty csrf accepted")
		}
	})
}

func FuzzDecodeAuthRound(f *testing.F) {
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"auth_id_digest":"` + authIDDigest("x") + `","callbacks":[]}`))
	f.Add([]byte(`{"auth_id_digest":7}`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		round, err := decodeAuthRound(payload)
		if err != nil {
			return
		}
		if d, ok := round["auth_id_digest"]; ok {
			var s string
			if json.Unmarshal(d, &s) != nil {
				t.Fatal("non-string digest accepted")
			}
			if _, err := parseAuthIDDigest(s); err != nil {
				t.Fatalf("malformed digest accepted: %v", err)
			}
		}
	})
}

func TestMQTTCode(t *testing.T) {
	tests := []struct {
		reason byte
		want   codes.Code
	}{
		{0x00, codes.Changed}, {0x10, codes.Changed}, {0x86, codes.Unauthorized}, {0x87, codes.Forbidden},
		{0x97, codes.TooManyRequests}, {0x9F, codes.TooManyRequests}, {0x88, codes.ServiceUnavailable},
		{0x90, codes.BadRequest}, {0x95, codes.RequestEntityTooLarge}, {0x80, codes.InternalServerError},
	}
	for _, tt := range tests {
		if got := mqttCode(tt.reason, codes.Changed); got != tt.want {
			t.Errorf("reason 0x%02x → %v, want %v", tt.reason, got, tt.want)
		}
	}
}

func FuzzDecodePublish(f *testing.F) {
	f.Add("/ps/things/a/telemetry", []byte(`{"token":"t","payload":"1"}`), "qos=0")
	f.Add("/ps/", []byte(`{}`), "retain")
	f.Fuzz(func(t *testing.T, path string, body []byte, query string) {
		p, err := decodePublish(path, uint16(FormatJSON), body, []string{query})
		if err != nil {
			return
		}
		if p.token == "" || p.topic == "" || p.qos > 1 {
			t.Fatalf("accepted %+v", p)
		}
	})
}

func FuzzDecodeSubscribe(f *testing.F) {
	f.Add("/ps/things/a/commands/#", []byte(`{"token":"t"}`))
	f.Add("/ps/", []byte(`{}`))
	f.Fuzz(func(t *testing.T, path string, body []byte) {
		filter, token, err := decodeSubscribe(path, uint16(FormatJSON), body)
		if err == nil && (filter == "" || token == "") {
			t.Fatalf("accepted filter %q token %q", filter, token)
		}
	})
}
