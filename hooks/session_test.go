package hooks_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/mochi-mqtt/server/v2/hooks/storage"
	"github.com/mochi-mqtt/server/v2/packets"
	"go.etcd.io/bbolt"

	"imb/broker"
	"imb/internal/issuer"
	"imb/internal/mqtttest"
)

func TestSessionOfAnotherIdentityIsNeverInherited(t *testing.T) {
	e := newEnv(t, func(c *broker.Config) { c.ClientIDBinding = []string{"*"} })
	// cloud-app leaves a persistent session under the client id "shared".
	owner := e.connect5("shared", e.jwt("cloud-app", "fleet:read"), v5opts{clean: true, expiry: 3600})
	if owner.err != nil {
		t.Fatal(owner.err)
	}
	owner.subscribe(t, "things/+/telemetry/#", 1)
	_ = owner.c.Disconnect(&paho.Disconnect{})
	waitFor(t, "owner offline", func() bool {
		cl, ok := e.b.Server().Clients.Get("shared")
		return ok && cl.Closed()
	})
	thing := e.connect5("t1", e.jwt("t1", "publish"), v5opts{clean: true})
	thing.publish(t, "things/t1/telemetry/queued", 1, false, "queued for cloud-app")

	// t2 resumes "shared" without clean start: it must get nothing of cloud-app's.
	intruder := e.connect5("shared", e.jwt("t2", "subscribe"), v5opts{clean: false, expiry: 3600})
	if intruder.err != nil {
		t.Fatal(intruder.err)
	}
	if intruder.ack.SessionPresent {
		t.Fatal("another identity was told the stored session is present")
	}
	thing.publish(t, "things/t1/telemetry/live", 1, false, "live")
	intruder.expectNoMsg(t, "things/t1/telemetry/queued", 300*time.Millisecond)
	intruder.expectNoMsg(t, "things/t1/telemetry/live", 100*time.Millisecond)
	if len(e.audit.find("session_discarded")) != 1 {
		t.Fatal("discarded session not audited")
	}
}

func TestOwnSessionResumesWithQueuedMessages(t *testing.T) {
	e := newEnv(t)
	app := e.connect5("cloud-app", e.jwt("cloud-app", "fleet:read"), v5opts{clean: true, expiry: 3600})
	app.subscribe(t, "things/+/telemetry/#", 1)
	_ = app.c.Disconnect(&paho.Disconnect{})
	waitFor(t, "app offline", func() bool {
		cl, ok := e.b.Server().Clients.Get("cloud-app")
		return ok && cl.Closed()
	})
	thing := e.connect5("t1", e.jwt("t1", "publish"), v5opts{clean: true})
	if rc := thing.publish(t, "things/t1/telemetry/queued", 1, false, "queued"); rc != 0 {
		t.Fatalf("queued publish: PUBACK %#x, want 0 (the offline session's subscription must match)", rc)
	}
	back := e.connect5("cloud-app", e.jwt("cloud-app", "fleet:read"), v5opts{clean: false, expiry: 3600})
	if back.err != nil || !back.ack.SessionPresent {
		t.Fatalf("own session not resumed: %v %+v", back.err, back.ack)
	}
	back.expectMsg(t, "things/t1/telemetry/queued")
}

func TestTakeoverOfLiveSessionByAnotherIdentityRefused(t *testing.T) {
	e := newEnv(t, func(c *broker.Config) { c.ClientIDBinding = []string{"*"} })
	owner := e.connect5("shared", e.jwt("cloud-app", "fleet:read"), v5opts{clean: true})
	if owner.err != nil {
		t.Fatal(owner.err)
	}
	if r := e.connect5("shared", e.jwt("t2", "publish"), v5opts{clean: true}); r.code() != 0x87 {
		t.Fatalf("takeover by another identity: CONNACK %#x, want 0x87", r.code())
	}
	// The same identity may take over (a reconnecting device).
	if r := e.connect5("shared", e.jwt("cloud-app", "fleet:read"), v5opts{clean: true}); r.code() != 0 {
		t.Fatalf("takeover by the same identity: %#x", r.code())
	}
}

func TestTopicAliasCannotBypassPublishCheck(t *testing.T) {
	e := newEnv(t)
	app := e.fleet(t)
	app.subscribe(t, "things/+/telemetry/#", 1)
	app.subscribe(t, "things/+/commands/#", 1)
	r := mqtttest.Connect(t, e.addr, "t1", e.jwt("t1", "publish"))
	// Set alias 1 on an allowed topic, then publish to a foreign topic via the alias
	// alone, then try to re-point the alias at a foreign topic.
	for i, pk := range []packets.Packet{
		{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, PacketID: 1, TopicName: "things/t1/telemetry/a",
			Properties: packets.Properties{TopicAlias: 1, TopicAliasFlag: true}, Payload: []byte("set")},
		{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, PacketID: 2, TopicName: "",
			Properties: packets.Properties{TopicAlias: 1, TopicAliasFlag: true}, Payload: []byte("via alias")},
	} {
		_ = r.Send(pk)
		resp, ok := r.Read(5 * time.Second)
		if !ok {
			break // the broker closed the connection: also a refusal
		}
		if resp.FixedHeader.Type == packets.Puback && resp.ReasonCode == 0 {
			t.Fatalf("packet %d with a topic alias was accepted", i)
		}
	}
	other := e.connect5("t3", e.jwt("t3", "publish"), v5opts{clean: true})
	barrier(t, other, app, "t3")
	app.expectNoMsg(t, "things/t1/telemetry/a", 200*time.Millisecond)
}

func TestTokenNeverReachesStorage(t *testing.T) {
	dir := t.TempDir()
	e := newEnv(t, func(c *broker.Config) { c.DataDir = dir })
	tok := e.jwt("t1", "publish", "subscribe")
	r := e.connect5("t1", tok, v5opts{clean: false, expiry: 3600, authMethod: true})
	if r.err != nil {
		t.Fatal(r.err)
	}
	r.subscribe(t, "things/t1/commands/#", 1)
	_ = r.c.Disconnect(&paho.Disconnect{})
	waitFor(t, "offline", func() bool {
		cl, ok := e.b.Server().Clients.Get("t1")
		return ok && cl.Closed()
	})
	_ = e.b.Close()
	sig := []byte(tok[len(tok)-40:])
	err := filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if bytes.Contains(b, sig) {
			t.Errorf("%s holds the token", p)
		}
		if !bytes.Contains(b, []byte("t1")) && filepath.Base(p) == "mqtt.db" {
			t.Errorf("%s holds no session at all: the check proves nothing", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestQuickReconnectKeepsNewSession reconnects under the same client id right after
// a clean disconnect: mochi's clean-up of the old connection deletes by client id,
// and must not delete the new session or its subscription.
func TestQuickReconnectKeepsNewSession(t *testing.T) {
	e := newEnv(t)
	tok := e.jwt("t1", "publish", "subscribe")
	app := e.fleet(t)
	for i := 0; i < 30; i++ {
		r := e.connect5("t1", tok, v5opts{clean: true})
		if r.err != nil {
			t.Fatal(r.err)
		}
		if got := r.subscribe(t, "things/t1/commands/#", 1); got != 1 {
			t.Fatalf("round %d: subscribe %#x", i, got)
		}
		topic := "things/t1/commands/round-" + strconv.Itoa(i)
		if got := app.publish(t, topic, 1, false, "x"); got != 0 {
			t.Fatalf("round %d: command publish %#x", i, got)
		}
		r.expectMsg(t, topic)
		_ = r.c.Disconnect(&paho.Disconnect{})
	}
}

// TestLegacySessionRecordKeepsItsPrincipal restarts a broker on a data directory
// whose session records are in the form written before owners were kept (the
// username and the record name only the plain id): the principal that left a session
// resumes it, a same-named identity of another kind does not inherit it.
func TestLegacySessionRecordKeepsItsPrincipal(t *testing.T) {
	dir := t.TempDir()
	anyID := func(c *broker.Config) { c.ClientIDBinding = []string{"*"}; c.DataDir = dir }
	e := newEnv(t, anyID)
	app := func(sub string) string {
		return e.iss.Mint(issuer.Claims{"sub": sub, "scope": []string{"fleet:read"}}, time.Hour)
	}
	for _, id := range []string{"legacy-a", "legacy-b"} {
		r := e.connect5(id, app("(age!cloud-app)"), v5opts{expiry: 3600})
		if r.err != nil {
			t.Fatal(r.err)
		}
		r.subscribe(t, "things/+/telemetry/#", 1)
		_ = r.c.Disconnect(&paho.Disconnect{})
		waitFor(t, id+" offline", func() bool {
			cl, ok := e.b.Server().Clients.Get(id)
			return ok && cl.Closed()
		})
	}
	_ = e.b.Close()
	toLegacy(t, dir, "cloud-app", "legacy-a", "legacy-b")

	again := newEnv(t, anyID, func(c *broker.Config) {
		c.Issuer, c.IntrospectURL = e.iss.URL(), e.iss.IntrospectURL()
		c.ClientID, c.ClientSecret = e.iss.ClientID(), e.iss.ClientSecret()
	})
	rogue := again.connect5("legacy-a", app("(usr!cloud-app)"), v5opts{expiry: 3600})
	if rogue.err != nil {
		t.Fatal(rogue.err)
	}
	if rogue.ack.SessionPresent {
		t.Fatal("a same-named identity of another kind inherited a session from a legacy record")
	}
	owner := again.connect5("legacy-b", app("(age!cloud-app)"), v5opts{expiry: 3600})
	if owner.err != nil || !owner.ack.SessionPresent {
		t.Fatalf("the owner did not resume its legacy session: %v %+v", owner.err, owner.ack)
	}
}

// toLegacy rewrites the stored sessions of the client ids into the form written
// before owners were kept: mochi's client record names plainID as its username, and
// the session record has no Owner.
func toLegacy(t *testing.T, dir, plainID string, clientIDs ...string) {
	t.Helper()
	rewrite := func(file, bucket string, key func(string) string, change func([]byte) ([]byte, error)) {
		db, err := bbolt.Open(filepath.Join(dir, file), 0o600, &bbolt.Options{Timeout: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		err = db.Update(func(tx *bbolt.Tx) error {
			b := tx.Bucket([]byte(bucket))
			for _, id := range clientIDs {
				v := b.Get([]byte(key(id)))
				if v == nil {
					return fmt.Errorf("%s: no record for %s", file, id)
				}
				nv, err := change(v)
				if err != nil {
					return err
				}
				if err := b.Put([]byte(key(id)), nv); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	rewrite("mqtt.db", "mochi", func(id string) string { return storage.ClientKey + "_" + id }, func(v []byte) ([]byte, error) {
		var c storage.Client
		if err := c.UnmarshalBinary(v); err != nil {
			return nil, err
		}
		c.Username = []byte(plainID)
		return c.MarshalBinary()
	})
	rewrite("sessions.db", "subjects", func(id string) string { return id }, func(v []byte) ([]byte, error) {
		var m map[string]any
		if err := json.Unmarshal(v, &m); err != nil {
			return nil, err
		}
		delete(m, "Owner")
		return json.Marshal(m)
	})
}

// TestRestoredSessionQueuesWhileOffline: a persistent session restored from
// storage after a restart has no connection and no token yet. What is published
// for it then is queued, and judged against its owner's grants when it resumes:
// delivered under grants that still allow it, dropped under grants that do not.
func TestRestoredSessionQueuesWhileOffline(t *testing.T) {
	dir := t.TempDir()
	stored := func(c *broker.Config) { c.DataDir = dir }
	e := newEnv(t, stored)
	for _, id := range []string{"cloud-app", "cloud-ro"} {
		r := e.connect5(id, e.jwt(id, "fleet:read"), v5opts{clean: true, expiry: 3600})
		if r.err != nil {
			t.Fatal(r.err)
		}
		r.subscribe(t, "things/+/telemetry/#", 1)
		_ = r.c.Disconnect(&paho.Disconnect{})
		waitFor(t, id+" offline", func() bool {
			cl, ok := e.b.Server().Clients.Get(id)
			return ok && cl.Closed()
		})
	}
	_ = e.b.Close()

	again := newEnv(t, stored, func(c *broker.Config) {
		c.Issuer, c.IntrospectURL = e.iss.URL(), e.iss.IntrospectURL()
		c.ClientID, c.ClientSecret = e.iss.ClientID(), e.iss.ClientSecret()
	})
	thing := again.connect5("t1", e.jwt("t1", "publish"), v5opts{clean: true})
	if thing.err != nil {
		t.Fatal(thing.err)
	}
	if rc := thing.publish(t, "things/t1/telemetry/after-restart", 1, false, "queued"); rc != 0 {
		t.Fatalf("publish to restored sessions: PUBACK %#x, want 0", rc)
	}
	back := again.connect5("cloud-app", e.jwt("cloud-app", "fleet:read"), v5opts{clean: false, expiry: 3600})
	if back.err != nil || !back.ack.SessionPresent {
		t.Fatalf("own session not resumed: %v %+v", back.err, back.ack)
	}
	back.expectMsg(t, "things/t1/telemetry/after-restart")

	narrowed := again.connect5("cloud-ro", e.jwt("cloud-ro", "subscribe"), v5opts{clean: false, expiry: 3600})
	if narrowed.err != nil || !narrowed.ack.SessionPresent {
		t.Fatalf("own session not resumed: %v %+v", narrowed.err, narrowed.ack)
	}
	narrowed.expectNoMsg(t, "things/t1/telemetry/after-restart", 500*time.Millisecond)
}
