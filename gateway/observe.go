package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/mux"

	"imb/internal/asthing"
	"imb/sdk"
)

// CoAP subscribe (GET /ps/{filter} with Observe: 0, draft-ietf-core-coap-pubsub's subscription).
// The request body is the JSON wrapper {"token": "<access token>"} (content format 50): as for a
// publish, a token does not fit an option. The gateway makes a real MQTT 5 subscription with the
// thing's token, so the broker's subscribe and receive checks apply to every message. Each message
// is one notification, 2.05 Content in JSON: {"topic": "…", "payload": "…"}. When the broker ends
// the connection (the token expired or was revoked) the observation ends with a last notification
// of 4.01; a broker failure ends it with 5.03.

// notification is the body of one delivered message.
type notification struct {
	Topic   string `json:"topic"`
	Payload string `json:"payload"`
}

// observation is one live CoAP observation backed by an MQTT connection.
type observation struct {
	conn   mux.Conn
	token  message.Token
	mu     sync.Mutex // orders notifications and guards seq and ended
	seq    uint32
	ended  bool
	cancel context.CancelFunc
}

// notify sends one notification; a final one (an error code) ends the observation.
func (o *observation) notify(code codes.Code, body []byte) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.ended {
		return nil
	}
	m := o.conn.AcquireMessage(o.conn.Context())
	defer o.conn.ReleaseMessage(m)
	m.SetCode(code)
	m.SetToken(o.token)
	m.SetContentFormat(FormatJSON)
	if body != nil {
		m.SetBody(bytes.NewReader(body))
	}
	if code == codes.Content {
		o.seq++
		m.SetObserve(o.seq)
	} else {
		o.ended = true // a notification without Observe ends the observation (RFC 7641 §3.2)
	}
	return o.conn.WriteMessage(m)
}

// decodeSubscribe reads a GET /ps/{filter}: the MQTT filter from the path and the token.
func decodeSubscribe(path string, format uint16, body []byte) (filter, token string, err error) {
	filter, ok := strings.CutPrefix(path, pubsubPrefix)
	if !ok || filter == "" {
		return "", "", fmt.Errorf("%w: want GET /ps/{filter}", errBadRequest)
	}
	if format != uint16(FormatJSON) {
		return "", "", fmt.Errorf("%w: content format %d: want 50, {\"token\":…}", errBadRequest, format)
	}
	var w wrapper
	if err := json.Unmarshal(body, &w); err != nil || w.Token == "" {
		return "", "", fmt.Errorf("%w: want the JSON wrapper {\"token\":…}", errBadRequest)
	}
	return filter, w.Token, nil
}

// disconnectCode is how an observation ends when the broker closes its MQTT connection: a token that
// expired or was revoked is 4.01 to the thing, anything else 5.03.
func disconnectCode(reason byte) codes.Code {
	switch reason {
	case 0x86, 0x87, 0x8C, 0x8E, 0xA0: // bad credentials, not authorized, bad auth, taken over, max connect time
		return codes.Unauthorized
	}
	return codes.ServiceUnavailable
}

// observations are the live observations by DTLS peer and CoAP token, so that a GET with Observe: 1
// (deregistration, RFC 7641 §3.6) can end one.
type observations struct {
	mu   sync.Mutex
	live map[string]chan struct{}
}

func observationKey(conn mux.Conn, token message.Token) string {
	return conn.RemoteAddr().String() + "|" + string(token)
}

func (l *observations) add(key string) chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.live == nil {
		l.live = map[string]chan struct{}{}
	}
	stop := make(chan struct{})
	l.live[key] = stop
	return stop
}

// remove forgets key; with stop it also ends the observation.
func (l *observations) remove(key string, stop bool) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	ch, ok := l.live[key]
	if ok {
		delete(l.live, key)
		if stop {
			close(ch)
		}
	}
	return ok
}

// subscribe serves GET /ps/{filter}: Observe 0 opens an observation, Observe 1 ends one; a plain GET
// is refused (a topic has no stored representation in the gateway).
func (g *Gateway) subscribe(w mux.ResponseWriter, r *mux.Message) {
	obs, err := r.Observe()
	if err == nil && obs == 1 {
		if g.observations.remove(observationKey(w.Conn(), r.Token()), true) {
			g.reply(w, codes.Content, FormatJSON, []byte(`{}`))
			return
		}
		g.fail(w, codes.NotFound, "no such observation")
		return
	}
	if err != nil || obs != 0 {
		g.fail(w, codes.BadRequest, "GET /ps/{filter} needs Observe: 0 (subscribe) or 1 (unsubscribe)")
		return
	}
	path, _ := r.Path()
	format, body, err := readRequest(r)
	var filter, token string
	if err == nil {
		filter, token, err = decodeSubscribe(path, uint16(format), body)
	}
	if err != nil {
		g.fail(w, codes.BadRequest, err.Error())
		return
	}
	if g.broker == "" {
		g.fail(w, codes.NotImplemented, "this gateway has no broker to subscribe to")
		return
	}
	dctx, dcancel := context.WithTimeout(r.Context(), g.timeout)
	defer dcancel()
	sub, o := asthing.Subscribe(dctx, g.dial, token, filter)
	if o.Failed() {
		code, msg := g.outcomeCode(o, codes.Content)
		g.fail(w, code, msg)
		return
	}
	ob := &observation{conn: w.Conn(), token: append(message.Token(nil), r.Token()...)}
	// The first answer registers the observation; messages follow as notifications.
	ob.mu.Lock()
	ob.seq = 1
	g.reply(w, codes.Content, FormatJSON, []byte(`{}`))
	w.Message().SetObserve(ob.seq)
	ob.mu.Unlock()
	g.log.Debug("coap observe", "filter", filter, "token", sdk.Fingerprint(token))
	key := observationKey(ob.conn, ob.token)
	stop := g.observations.add(key)
	go func() {
		defer g.observations.remove(key, false)
		defer sub.Close()
		for {
			select {
			case m, ok := <-sub.Messages:
				if !ok {
					code := disconnectCode(sub.End().Code)
					_ = ob.notify(code, []byte(`{"error":"subscription ended"}`))
					return
				}
				b, _ := json.Marshal(notification{Topic: m.Topic, Payload: string(m.Payload)})
				if err := ob.notify(codes.Content, b); err != nil {
					_ = ob.notify(codes.ServiceUnavailable, []byte(`{"error":"subscription ended"}`))
					return
				}
			case <-stop:
				return
			case <-ob.conn.Done():
				return
			}
		}
	}()
}
