package cluster_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"imb/amdev"
	"imb/broker"
)

// TestAmdevTransmitsToTheCluster: a cluster of three trusting amdev's SSF transmitter, node 1 amdev's receiver.
// A thing connected to node 2 is disconnected (DISCONNECT 0x87) within a second of revoking its token at
// amdev's /oauth2/token/revoke, another within a second of its identity's deletion at amdev; node 3 refuses the
// revoked token afterwards. (TestClusterRevocation does the same for a SET of an independent transmitter and
// for the administrator's call.)
func TestAmdevTransmitsToTheCluster(t *testing.T) {
	startCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	am, err := amdev.Start(startCtx, amdev.Config{Listen: "127.0.0.1:0", InMemory: true, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = am.Close() })
	bc, _ := am.BrokerClient()
	tc := startCluster(t, 3, func(_ int, c *broker.Config) {
		c.Issuer, c.IntrospectURL, c.ClientID, c.ClientSecret = am.Issuer(), am.IntrospectionURL(), bc.ID, bc.Secret
		c.Audience = []string{amdev.DefaultClientID}
		c.SSF = broker.SSFConfig{Issuer: am.SSFIssuer(), JWKSURL: am.SSFJWKSURL(), Audience: "imb-cluster"}
	})
	// The cluster may take its time to start on a busy machine; what is timed starts here.
	ctx, cancelCalls := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancelCalls()
	if err := am.AddSSFReceiver(amdev.SSFReceiver{URL: "http://" + tc.nodes[0].Addr("admin") + "/ssf/events", Audience: "imb-cluster"}); err != nil {
		t.Fatal(err)
	}
	token := func(id string) string {
		if err := am.EnsureThing(ctx, amdev.DemoThing{ID: id}); err != nil {
			t.Fatal(err)
		}
		tok, err := am.IssueAccessToken(ctx, id, "", []string{"publish"})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	revokedTok, deletedTok := token("revoked-thing"), token("deleted-thing")
	revoked := tc.mustConnect(1, "revoked-thing", revokedTok)
	deleted := tc.mustConnect(1, "deleted-thing", deletedTok)
	revoked.subscribe(t, "things/revoked-thing/#", 1) // the token works on node 2

	form := url.Values{"token": {revokedTok}}.Encode()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, am.Issuer()+"/token/revoke", strings.NewReader(form))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(amdev.DefaultClientID, amdev.DefaultClientSecret)
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("revoke at amdev: %v %v", err, resp)
	}
	resp.Body.Close()
	waitGone(t, revoked, start, "token revoked at amdev's /oauth2/token/revoke")

	req, _ = http.NewRequestWithContext(ctx, http.MethodPost, am.URL()+"/json/authenticate", nil)
	req.Header.Set("X-OpenAM-Username", "amAdmin")
	req.Header.Set("X-OpenAM-Password", "changeit")
	resp, err = http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("admin login: %v %v", err, resp)
	}
	resp.Body.Close()
	var sso string
	for _, c := range resp.Cookies() {
		if c.Name == "iPlanetDirectoryPro" {
			sso = c.Value
		}
	}
	req, _ = http.NewRequestWithContext(ctx, http.MethodDelete, am.URL()+"/json/realms/root/users/deleted-thing", nil)
	req.Header.Set("iPlanetDirectoryPro", sso)
	start = time.Now()
	resp, err = http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("delete at amdev: %v %v", err, resp)
	}
	resp.Body.Close()
	waitGone(t, deleted, start, "identity deleted at amdev")

	if _, ack, err := tc.connect(2, "revoked-thing", revokedTok, nil); err == nil || ack == nil || ack.ReasonCode != 0x86 {
		t.Errorf("the revoked token on node 3: %v %+v, want CONNACK 0x86", err, ack)
	}
}
