package httpdoor

import (
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

func TestParseQuery(t *testing.T) {
	tests := []struct {
		query  string
		qos    byte
		retain bool
		ok     bool
	}{
		{"", 1, false, true},
		{"qos=0", 0, false, true},
		{"qos=1&retain=true", 1, true, true},
		{"retain=false", 1, false, true},
		{"qos=2", 0, false, false},
		{"qos=0&qos=1", 0, false, false},
		{"retain=yes", 0, false, false},
		{"retained=true", 0, false, false},
	}
	for _, tt := range tests {
		q, _ := url.ParseQuery(tt.query)
		o, err := parseQuery(q)
		if (err == nil) != tt.ok || (tt.ok && (o.qos != tt.qos || o.retain != tt.retain)) {
			t.Errorf("%q: %+v %v", tt.query, o, err)
		}
	}
}

func TestParseProperties(t *testing.T) {
	tests := []struct {
		name string
		hdr  http.Header
		ok   bool
		want func(*testing.T, http.Header)
	}{
		{"none", http.Header{}, true, nil},
		{"all", http.Header{
			"Content-Type":          {"text/plain"},
			"Mqtt-Message-Expiry":   {"60"},
			"Mqtt-Response-Topic":   {"a/b"},
			"Mqtt-Correlation-Data": {"AAEC"},
			"Mqtt-User-Property":    {"k=v", "x=%E2%82%AC"},
			"Mqtt-Payload-Format":   {"utf-8"},
		}, true, nil},
		{"correlation with padding", http.Header{"Mqtt-Correlation-Data": {"AA=="}}, true, nil},
		{"expiry negative", http.Header{"Mqtt-Message-Expiry": {"-1"}}, false, nil},
		{"expiry too large", http.Header{"Mqtt-Message-Expiry": {"4294967296"}}, false, nil},
		{"expiry twice", http.Header{"Mqtt-Message-Expiry": {"1", "2"}}, false, nil},
		{"response topic wildcard", http.Header{"Mqtt-Response-Topic": {"a/+"}}, false, nil},
		{"correlation not base64", http.Header{"Mqtt-Correlation-Data": {"!!"}}, false, nil},
		{"user property without =", http.Header{"Mqtt-User-Property": {"k"}}, false, nil},
		{"user property empty key", http.Header{"Mqtt-User-Property": {"=v"}}, false, nil},
		{"user property bad escape", http.Header{"Mqtt-User-Property": {"k=%zz"}}, false, nil},
		{"user property NUL", http.Header{"Mqtt-User-Property": {"k=%00"}}, false, nil},
		{"too many user properties", http.Header{"Mqtt-User-Property": strings.Split(strings.Repeat("k=v,", 33), ",")[:33]}, false, nil},
		{"payload format unknown", http.Header{"Mqtt-Payload-Format": {"latin1"}}, false, nil},
		{"two content types", http.Header{"Content-Type": {"a", "b"}}, false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := parseProperties(tt.hdr)
			if (err == nil) != tt.ok {
				t.Fatalf("%+v %v, want ok=%v", p, err, tt.ok)
			}
		})
	}
	p, err := parseProperties(http.Header{"Mqtt-User-Property": {" x = %E2%82%AC "}, "Mqtt-Correlation-Data": {"AAEC"}})
	if err != nil || len(p.User) != 1 || p.User[0].Key != "x" || p.User[0].Value != "€" || string(p.CorrelationData) != "\x00\x01\x02" {
		t.Fatalf("decoded %+v %v", p, err)
	}
}

func TestBearerToken(t *testing.T) {
	tests := []struct {
		auth   []string
		scheme string
		token  string
		found  bool
		bad    bool
	}{
		{nil, "", "", false, false},
		{[]string{"Bearer abc.DEF-_~+/="}, "bearer", "abc.DEF-_~+/=", true, false},
		{[]string{"bearer  abc"}, "bearer", "abc", true, false},
		{[]string{"DPoP abc"}, "dpop", "abc", true, false},
		{[]string{"Basic dTpw"}, "", "", false, true},
		{[]string{"Bearer"}, "", "", false, true},
		{[]string{"Bearer a b"}, "", "", false, true},
		{[]string{"Bearer ==="}, "", "", false, true},
		{[]string{"Bearer a", "Bearer b"}, "", "", false, true},
	}
	for _, tt := range tests {
		h := http.Header{"Authorization": tt.auth}
		scheme, tok, found, err := bearerToken(h)
		if (err != nil) != tt.bad || found != tt.found || scheme != tt.scheme || tok != tt.token {
			t.Errorf("%q: %q %q %v %v", tt.auth, scheme, tok, found, err)
		}
	}
}

func TestChallengeQuoting(t *testing.T) {
	c := challenge("invalid_token", "a \"quoted\"\\ text\n€")
	if strings.ContainsAny(c[strings.Index(c, "error_description=")+19:len(c)-1], "\"\\\n") {
		t.Fatalf("challenge %q keeps characters RFC 6750 forbids", c)
	}
}

// FuzzParseProperties feeds arbitrary header values to the parsers of untrusted request input: none
// may panic, and whatever they accept must be a valid MQTT 5 property set.
func FuzzParseProperties(f *testing.F) {
	f.Add("text/plain", "60", "a/b", "AAEC", "k=v", "utf-8", "qos=1&retain=true", "Bearer abc")
	f.Add("", "", "", "", "=", "", "qos=0&qos=1", "DPoP ")
	f.Add("\x00", "-1", "a/+", "!!", "k=%zz", "latin1", "retain=maybe", "Basic x")
	f.Fuzz(func(t *testing.T, ct, expiry, resp, corr, up, format, query, auth string) {
		h := http.Header{}
		for k, v := range map[string]string{"Content-Type": ct, HeaderMessageExpiry: expiry, HeaderResponseTopic: resp,
			HeaderCorrelationData: corr, HeaderUserProperty: up, HeaderPayloadFormat: format, "Authorization": auth} {
			if v != "" {
				h.Set(k, v)
			}
		}
		if p, err := parseProperties(h); err == nil {
			if !mqttString(p.ContentType) || !mqttString(p.ResponseTopic) || strings.ContainsAny(p.ResponseTopic, "+#") {
				t.Fatalf("accepted an invalid property: %+v", p)
			}
			for _, u := range p.User {
				if u.Key == "" || !mqttString(u.Key) || !mqttString(u.Value) {
					t.Fatalf("accepted an invalid user property %+v", u)
				}
			}
			if packetSize("t", p, 0) < 2+1+2+4+5 {
				t.Fatalf("packet size %d too small", packetSize("t", p, 0))
			}
		}
		if q, err := url.ParseQuery(query); err == nil {
			if o, err := parseQuery(q); err == nil && o.qos > 1 {
				t.Fatalf("accepted qos %d", o.qos)
			}
		}
		if _, tok, ok, err := bearerToken(h); err == nil && ok && !b64token(tok) {
			t.Fatalf("accepted token %q", tok)
		}
		_ = checkTopicName("topic", resp)
		_ = acceptsEventStream([]string{ct})
	})
}

// FuzzDPoPProof feeds arbitrary proofs and access tokens to the DPoP checks: never a panic, and no
// proof is accepted for a key thumbprint it was not made with (the fuzzer cannot sign).
func FuzzDPoPProof(f *testing.F) {
	f.Add("eyJhbGciOiJFUzI1NiIsInR5cCI6ImRwb3Arand0In0.e30.sig", "a.eyJjbmYiOnsiamt0IjoieCJ9fQ.b", "x")
	f.Add("", "", "")
	f.Add("a.b.c", "not-a-jwt", "jkt")
	f.Fuzz(func(t *testing.T, proof, token, jkt string) {
		_ = boundKey(token)
		if _, err := verifyProof(proof, jkt); err == nil {
			t.Fatalf("proof %q accepted for jkt %q", proof, jkt)
		}
		_ = sameHTU(proof, "http://"+jkt+"/topics/x")
	})
}

// One jti, many requests at once: exactly one is accepted.
func TestReplayCacheConcurrent(t *testing.T) {
	c := newReplayCache()
	var wg sync.WaitGroup
	var accepted atomic.Int32
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if c.first("same-jti") {
				accepted.Add(1)
			}
		}()
	}
	wg.Wait()
	if accepted.Load() != 1 {
		t.Fatalf("%d requests accepted with one jti", accepted.Load())
	}
}
