package cluster_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"imb/broker"
	"imb/internal/settest"
	"imb/ssf"
)

// TestClusterRevocation: a thing connected to node 2 of three is disconnected with DISCONNECT 0x87 within a
// second of a SET pushed to node 1, and another within a second of the administrator's revocation on node 1;
// node 1's session listing shows where each thing is (node, client id, remote, since; no token), and node 3
// refuses the revoked token afterwards and the SET replayed to it.
func TestClusterRevocation(t *testing.T) {
	tx := settest.New(t, "imb-cluster")
	tc := startCluster(t, 3, func(_ int, c *broker.Config) {
		c.SSF = broker.SSFConfig{Issuer: tx.Issuer, JWKSURL: tx.JWKSURL(), Audience: "imb-cluster"}
		c.AdminScope = "imb:admin"
	})
	node1 := "http://" + tc.nodes[0].Addr("admin")
	adminTok := tc.token("ops", "imb:admin")

	setThing := tc.token("set-thing", "publish")
	a, _, err := tc.connect(1, "set-thing", setThing, nil)
	if err != nil {
		t.Fatal(err)
	}
	adminThing := tc.token("admin-thing", "publish")
	b, _, err := tc.connect(1, "admin-thing", adminThing, nil)
	if err != nil {
		t.Fatal(err)
	}

	// Node 1 lists both things on n2.
	req, _ := http.NewRequest(http.MethodGet, node1+"/admin/v1/sessions", nil)
	req.Header.Set("Authorization", "Bearer "+adminTok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var listing struct {
		Sessions []map[string]any `json:"sessions"`
		Nodes    []string         `json:"nodes"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&listing); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("sessions: %d %v", resp.StatusCode, err)
	}
	resp.Body.Close()
	where := map[string]any{}
	for _, s := range listing.Sessions {
		where[s["client_id"].(string)] = s["node"]
		if s["remote"] == "" || s["connected_since"] == nil {
			t.Errorf("session row without remote or since: %v", s)
		}
	}
	if where["set-thing"] != "n2" || where["admin-thing"] != "n2" || len(listing.Nodes) != 3 {
		t.Fatalf("node 1's listing: %+v", listing)
	}

	// A SET pushed to node 1.
	set := tx.Sign(t, tx.Claims(ssf.SessionRevoked, map[string]any{"subject": map[string]any{"format": "opaque", "id": "set-thing"}}), "secevent+jwt", nil)
	start := time.Now()
	if code, e := settest.Push(t, node1+"/ssf/events", set, settest.MediaType); code != http.StatusAccepted {
		t.Fatalf("push to node 1: %d %v", code, e)
	}
	waitGone(t, a, start, "SET on node 1")
	// The same SET pushed to node 3 is a replay there too: node 1 told every node its jti with the event.
	if code, e := settest.Push(t, "http://"+tc.nodes[2].Addr("admin")+"/ssf/events", set, settest.MediaType); code != http.StatusBadRequest || e["err"] != ssf.ErrInvalidRequest {
		t.Fatalf("the SET replayed to node 3: %d %v, want 400 invalid_request", code, e)
	}

	// The administrator's revocation on node 1.
	req, _ = http.NewRequest(http.MethodPost, node1+"/admin/v1/revocations", strings.NewReader(`{"sub":"admin-thing","reason":"sold"}`))
	req.Header.Set("Authorization", "Bearer "+adminTok)
	start = time.Now()
	resp, err = http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("admin revocation on node 1: %v %v", err, resp)
	}
	resp.Body.Close()
	waitGone(t, b, start, "admin call on node 1")

	// Node 3 refuses both revoked tokens.
	for id, tok := range map[string]string{"set-thing": setThing, "admin-thing": adminThing} {
		if _, ack, err := tc.connect(2, id, tok, nil); err == nil || ack == nil || ack.ReasonCode != 0x86 {
			t.Errorf("%s reconnecting to node 3 with its revoked token: %v %+v", id, err, ack)
		}
	}
}

// waitGone waits for the server's DISCONNECT 0x87 on c, at most a second after start.
func waitGone(t *testing.T, c *client, start time.Time, what string) {
	t.Helper()
	select {
	case d := <-c.gone:
		if d.ReasonCode != 0x87 {
			t.Fatalf("%s: DISCONNECT %#x, want 0x87", what, d.ReasonCode)
		}
		t.Logf("%s to DISCONNECT on node 2: %s (reason %q)", what, time.Since(start), d.Properties.ReasonString)
	case <-time.After(time.Second - time.Since(start)):
		t.Fatalf("%s: the thing on node 2 was not disconnected within 1s", what)
	}
}
