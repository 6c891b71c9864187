package httpdoor_test

import (
	"bytes"
	"io"
	"net/http"
	"testing"
)

// BenchmarkHTTPPublish is one QoS 1 publish through the door, end to end on loopback: the HTTP
// request over a kept-alive connection, the in-process MQTT connection with the (cached) token,
// the policy check, the PUBACK and the JSON answer. No subscriber: delivery is the broker's cost,
// the same as over MQTT.
func BenchmarkHTTPPublish(b *testing.B) {
	am := startAM(b, nil, "bench-tv")
	br := startBroker(b, brokerConfig(b, am))
	tok := thingToken(b, am, "bench-tv")
	url := "http://" + br.Addr("http") + "/topics/things/bench-tv/telemetry/t"
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	payload := []byte("21.5")
	n := 0
	publish := func() {
		n++
		req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(payload))
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("publish %d: %s", n, resp.Status)
		}
	}
	publish() // the token's validation is cached from here on, as for a thing that posts repeatedly
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		publish()
	}
}
