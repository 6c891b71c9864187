package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/mux"

	"imb/internal/asthing"
	"imb/sdk"
)

// CoAP publish into the broker (modelled on draft-ietf-core-coap-pubsub: a topic is a resource
// under /ps, POST publishes to it and answers 2.04 Changed). The thing's access token and the
// message travel in the JSON wrapper of the gateway protocol, content format 50:
//
//	{"token": "<OAuth access token>", "payload": "<message text>"}
//
// because a token (hundreds of bytes) does not fit a CoAP option of at most 255 bytes, and a
// blockwise JSON body does. The gateway makes an MQTT 5 connection with that token as the password
// and an empty client id (the broker assigns one by its client_id_binding), so the broker's own
// validation, policy and limits decide.

// pubsubPrefix is the path of the pub/sub function set.
const pubsubPrefix = "/ps/"

// publishRequest is a decoded POST /ps/{topic}.
type publishRequest struct {
	token   string
	topic   string
	payload []byte
	qos     byte
	retain  bool
}

// decodePublish reads a CoAP publish: the topic from the path, the token and message from the JSON
// wrapper, qos (0 or 1, default 1 so that the broker's verdict reaches the thing) and retain from
// URI-Query options.
func decodePublish(path string, format uint16, body []byte, queries []string) (publishRequest, error) {
	topic, ok := strings.CutPrefix(path, pubsubPrefix)
	if !ok || topic == "" {
		return publishRequest{}, fmt.Errorf("%w: want POST /ps/{topic}", errBadRequest)
	}
	if strings.ContainsAny(topic, "+#\x00") {
		return publishRequest{}, fmt.Errorf("%w: topic %q: wildcards are for GET (observe)", errBadRequest, topic)
	}
	if format != uint16(FormatJSON) {
		return publishRequest{}, fmt.Errorf("%w: content format %d: want 50, {\"token\":…,\"payload\":…}", errBadRequest, format)
	}
	if len(body) > maxPayload {
		return publishRequest{}, fmt.Errorf("%w: payload larger than %d bytes", errBadRequest, maxPayload)
	}
	var w wrapper
	if err := json.Unmarshal(body, &w); err != nil {
		return publishRequest{}, fmt.Errorf("%w: JSON wrapper: %w", errBadRequest, err)
	}
	if w.Token == "" {
		return publishRequest{}, fmt.Errorf("%w: JSON wrapper without token", errBadRequest)
	}
	p := publishRequest{token: w.Token, topic: topic, payload: []byte(w.Payload), qos: 1}
	for _, q := range queries {
		switch q {
		case "qos=0":
			p.qos = 0
		case "qos=1":
			p.qos = 1
		case "retain", "retain=true", "retain=1":
			p.retain = true
		default:
			return publishRequest{}, fmt.Errorf("%w: query %q: want qos=0, qos=1 or retain", errBadRequest, q)
		}
	}
	return p, nil
}

// mqttCode maps an MQTT 5 reason code of CONNACK or PUBACK onto the CoAP answer to the thing.
func mqttCode(reason byte, ok codes.Code) codes.Code {
	switch {
	case reason < 0x80:
		return ok
	case reason == 0x86 || reason == 0x8C || reason == 0x8D: // bad credentials, bad auth method, keep-alive
		return codes.Unauthorized
	case reason == 0x87: // not authorized
		return codes.Forbidden
	case reason == 0x96 || reason == 0x97 || reason == 0x9F: // message rate too high, quota exceeded, connection rate exceeded
		return codes.TooManyRequests
	case reason == 0x88 || reason == 0x89: // server unavailable, server busy
		return codes.ServiceUnavailable
	case reason == 0x90 || reason == 0x99: // topic name invalid, payload format invalid
		return codes.BadRequest
	case reason == 0x95: // packet too large
		return codes.RequestEntityTooLarge
	}
	return codes.InternalServerError
}

// publish relays one CoAP publish through an MQTT 5 connection made with the thing's token.
func (g *Gateway) publish(w mux.ResponseWriter, r *mux.Message) {
	switch r.Code() {
	case codes.POST:
	case codes.GET:
		g.subscribe(w, r)
		return
	default:
		g.fail(w, codes.MethodNotAllowed, "/ps/{topic}: POST publishes, GET with Observe subscribes")
		return
	}
	path, _ := r.Path()
	queries, _ := r.Queries()
	format, body, err := readRequest(r)
	var p publishRequest
	if err == nil {
		p, err = decodePublish(path, uint16(format), body, queries)
	}
	if err != nil {
		g.fail(w, codes.BadRequest, err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), g.timeout)
	defer cancel()
	code, msg := g.publishMQTT(ctx, p)
	g.log.Debug("coap publish", "topic", p.topic, "code", code.String(), "token", sdk.Fingerprint(p.token))
	g.fail(w, code, msg)
}

func (g *Gateway) publishMQTT(ctx context.Context, p publishRequest) (codes.Code, string) {
	if g.broker == "" {
		return codes.NotImplemented, "this gateway has no broker to publish to"
	}
	o := asthing.Publish(ctx, g.dial, p.token, &paho.Publish{Topic: p.topic, QoS: p.qos, Retain: p.retain, Payload: p.payload})
	return g.outcomeCode(o, codes.Changed)
}

// dial connects to the broker over TCP.
func (g *Gateway) dial(ctx context.Context) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "tcp", g.broker)
}

// outcomeCode is the CoAP answer for how a relayed MQTT request ended.
func (g *Gateway) outcomeCode(o asthing.Outcome, ok codes.Code) (codes.Code, string) {
	switch {
	case o.Step == asthing.StepDial && o.Err != nil:
		g.log.Warn("broker unreachable", "broker", g.broker, "err", o.Err)
		return codes.ServiceUnavailable, "broker unreachable"
	case o.TimedOut():
		return codes.GatewayTimeout, fmt.Sprintf("broker: %s timed out", o.Step)
	case o.Err != nil:
		return codes.ServiceUnavailable, o.String()
	case o.Code >= 0x80:
		return mqttCode(o.Code, ok), o.String()
	}
	return ok, ""
}

// publishTimeout bounds one CoAP publish when the gateway has no timeout of its own.
const publishTimeout = 10 * time.Second
