package httpdoor

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/eclipse/paho.golang/paho"

	"imb/hooks"
	"imb/internal/asthing"
	"imb/sdk"
)

// Config is what the door needs from the broker.
type Config struct {
	// Dial opens an MQTT connection to the broker for one request; remote is the HTTP client's
	// address, so that the broker's per-address bounds count the caller, not the door.
	Dial func(ctx context.Context, remote string) (net.Conn, error)
	// MaxPacketSize is the broker's Maximum Packet Size: a publish that would not fit is a 413.
	MaxPacketSize int
	// Timeout bounds one publish, and the setup of one subscription (default 10s).
	Timeout time.Duration
	// Heartbeat is the interval of SSE comment lines that keep an idle stream open through
	// proxies and find a reader that went away (default 25s).
	Heartbeat time.Duration
	// Logger receives the door's logs (default slog.Default()).
	Logger *slog.Logger
}

// Door serves the HTTP door's routes.
type Door struct {
	cfg     Config
	log     *slog.Logger
	replays *replayCache // jti of accepted DPoP proofs
}

// New returns the door's handler.
func New(cfg Config) (*Door, error) {
	if cfg.Dial == nil {
		return nil, errors.New("httpdoor: no Dial")
	}
	if cfg.MaxPacketSize <= 0 {
		return nil, errors.New("httpdoor: no MaxPacketSize")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = 25 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Door{cfg: cfg, log: cfg.Logger, replays: newReplayCache()}, nil
}

// topicsPrefix is the path under which every topic is a resource.
const topicsPrefix = "/topics/"

// ServeHTTP implements http.Handler. The routing is by hand, not by http.ServeMux: the mux cleans
// paths and redirects, and an MQTT topic may have empty levels ("a//b") or levels named "." that
// must reach the broker as they are.
func (d *Door) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	topic, ok := strings.CutPrefix(r.URL.Path, topicsPrefix)
	if !ok {
		badRequest(w, http.StatusNotFound, "not_found", "want POST /topics/{topic} or GET /topics/{filter}")
		return
	}
	switch r.Method {
	case http.MethodPost:
		d.publish(w, r, topic)
	case http.MethodGet:
		d.subscribe(w, r, topic)
	default:
		w.Header().Set("Allow", "GET, POST")
		badRequest(w, http.StatusMethodNotAllowed, "method_not_allowed", "POST publishes, GET subscribes")
	}
}

// dial is Dial for this request. The connection is told what the request proved (its DPoP key, its
// client certificate), which the broker holds a sender-constrained token to.
func (d *Door) dial(r *http.Request, jkt string) asthing.Dial {
	p := hooks.Proven{JKT: jkt, X5TS256: requestCert(r)}
	return func(ctx context.Context) (net.Conn, error) { return d.cfg.Dial(hooks.WithProven(ctx, p), r.RemoteAddr) }
}

// requestCert is the base64url SHA-256 thumbprint of the request's TLS client certificate, "" without one.
func requestCert(r *http.Request) string {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return ""
	}
	sum := sha256.Sum256(r.TLS.PeerCertificates[0].Raw)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// token reads the bearer token, answering 401 itself when there is none or it is malformed, and the
// thumbprint of the key its DPoP proof proved ("" for a bearer token).
func (d *Door) token(w http.ResponseWriter, r *http.Request) (tok, jkt string, ok bool) {
	scheme, tok, ok, err := bearerToken(r.Header)
	fail := func() (string, string, bool) { return "", "", false }
	if err != nil {
		writeError(w, answer{status: http.StatusUnauthorized, bearer: "invalid_request", name: "invalid_request"}, "", err.Error())
		return fail()
	}
	if !ok {
		writeError(w, answer{status: http.StatusUnauthorized, name: "no_token"}, "", "this resource needs Authorization: Bearer <access token>")
		return fail()
	}
	jkt = boundKey(tok)
	switch {
	case jkt != "" && scheme == "bearer":
		// RFC 9449 §7.1: a DPoP-bound token is not a bearer token.
		writeErrorFor(w, "DPoP", answer{status: http.StatusUnauthorized, bearer: "invalid_token", name: "dpop_required"}, "",
			"the token is DPoP-bound: send Authorization: DPoP <token> with a DPoP proof")
		return fail()
	case jkt == "" && scheme == "dpop":
		writeErrorFor(w, "DPoP", answer{status: http.StatusUnauthorized, bearer: "invalid_token", name: "not_dpop_bound"}, "",
			"Authorization: DPoP needs a JWT access token with cnf.jkt; send this token as Bearer")
		return fail()
	case scheme == "dpop":
		if err := checkProof(r, tok, jkt, d.replays, time.Now()); err != nil {
			writeErrorFor(w, "DPoP", answer{status: http.StatusUnauthorized, bearer: "invalid_dpop_proof", name: "invalid_dpop_proof"}, "", err.Error())
			return fail()
		}
	}
	return tok, jkt, true
}

// publishAnswer is the body of a successful publish.
type publishAnswer struct {
	Topic string `json:"topic"`
	QoS   byte   `json:"qos"`
	// Confirmed is true when the broker acknowledged the message (QoS 1); a QoS 0 message was
	// handed over and could still have been refused silently.
	Confirmed bool   `json:"confirmed"`
	Code      string `json:"mqtt_reason_code,omitempty"`
}

// publish serves POST /topics/{topic...}.
func (d *Door) publish(w http.ResponseWriter, r *http.Request, topic string) {
	if err := checkTopicName("topic", topic); err != nil {
		badRequest(w, http.StatusBadRequest, "topic_name_invalid", err.Error())
		return
	}
	opts, err := parseQuery(r.URL.Query())
	if err != nil {
		badRequest(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	props, err := parseProperties(r.Header)
	if err != nil {
		badRequest(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	tok, jkt, ok := d.token(w, r)
	if !ok {
		return
	}
	room := d.cfg.MaxPacketSize - packetSize(topic, props, 0)
	if r.ContentLength > int64(room) {
		badRequest(w, http.StatusRequestEntityTooLarge, "payload_too_large",
			fmt.Sprintf("payload of %d bytes: at most %d fit the broker's maximum packet size here", r.ContentLength, max(room, 0)))
		return
	}
	// The server bounds the headers only (ReadHeaderTimeout): a body trickled in a byte at a time
	// must not hold the request forever.
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(d.cfg.Timeout))
	payload, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(max(room, 0))))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			badRequest(w, http.StatusRequestEntityTooLarge, "payload_too_large",
				fmt.Sprintf("payload over %d bytes: larger than the broker's maximum packet size allows", max(room, 0)))
			return
		}
		badRequest(w, http.StatusBadRequest, "invalid_request", "reading the body: "+err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), d.cfg.Timeout)
	defer cancel()
	o := asthing.Publish(ctx, d.dial(r, jkt), tok, &paho.Publish{Topic: topic, QoS: opts.qos, Retain: opts.retain,
		Payload: payload, Properties: props})
	d.log.Debug("http publish", "topic", topic, "qos", opts.qos, "outcome", o.String(), "token", sdk.Fingerprint(tok),
		"remote", r.RemoteAddr)
	if o.Failed() {
		if o.Err != nil {
			d.log.Warn("http publish: broker did not answer", "step", string(o.Step), "error", o.Err)
		}
		refuse(w, o)
		return
	}
	status := http.StatusOK
	if opts.qos == 0 {
		status = http.StatusAccepted
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	a := publishAnswer{Topic: topic, QoS: opts.qos, Confirmed: opts.qos > 0}
	if opts.qos > 0 {
		a.Code = fmt.Sprintf("0x%02x", o.Code)
	}
	_ = json.NewEncoder(w).Encode(a)
}

// event is one delivered message in the SSE stream (event: message).
type event struct {
	Topic           string      `json:"topic"`
	Payload         *string     `json:"payload,omitempty"`        // a UTF-8 payload as text
	PayloadBase64   []byte      `json:"payload_base64,omitempty"` // any other payload
	QoS             byte        `json:"qos"`
	Retain          bool        `json:"retain,omitempty"`
	ContentType     string      `json:"content_type,omitempty"`
	ResponseTopic   string      `json:"response_topic,omitempty"`
	CorrelationData []byte      `json:"correlation_data,omitempty"` // base64
	MessageExpiry   *uint32     `json:"message_expiry,omitempty"`
	UserProperties  [][2]string `json:"user_properties,omitempty"`
}

func eventOf(p *paho.Publish) event {
	e := event{Topic: p.Topic, QoS: p.QoS, Retain: p.Retain}
	if utf8.Valid(p.Payload) {
		s := string(p.Payload)
		e.Payload = &s
	} else {
		e.PayloadBase64 = p.Payload
	}
	if pp := p.Properties; pp != nil {
		e.ContentType, e.ResponseTopic, e.CorrelationData, e.MessageExpiry = pp.ContentType, pp.ResponseTopic, pp.CorrelationData, pp.MessageExpiry
		for _, u := range pp.User {
			e.UserProperties = append(e.UserProperties, [2]string{u.Key, u.Value})
		}
	}
	return e
}

// endEvent is the last event of a stream (event: end): why it ended.
type endEvent struct {
	Reason      string `json:"reason"` // token_expired, token_revoked, session_taken_over, server_shutting_down, broker_unavailable
	Code        string `json:"mqtt_reason_code,omitempty"`
	Description string `json:"description,omitempty"`
}

// endOf names why the broker ended a subscription.
func endOf(o asthing.Outcome) endEvent {
	if o.Err != nil {
		return endEvent{Reason: "broker_unavailable", Description: "the connection to the broker was lost"}
	}
	e := endEvent{Code: fmt.Sprintf("0x%02x", o.Code), Description: o.Reason}
	switch o.Code {
	case 0xA0: // the identity hook's answer at exp (maximum connect time)
		e.Reason = "token_expired"
	case 0x87, 0x86:
		e.Reason = "token_revoked"
	case 0x8E:
		e.Reason = "session_taken_over"
	case 0x8B:
		e.Reason = "server_shutting_down"
	case 0x96, 0x97:
		e.Reason = "limit_exceeded"
	default:
		e.Reason = "subscription_ended"
	}
	return e
}

// subscribe serves GET /topics/{filter...} as an SSE stream.
func (d *Door) subscribe(w http.ResponseWriter, r *http.Request, filter string) {
	if filter == "" || !mqttString(filter) {
		badRequest(w, http.StatusBadRequest, "topic_filter_invalid", "want GET /topics/{filter}, the filter a non-empty MQTT string")
		return
	}
	if !acceptsEventStream(r.Header.Values("Accept")) {
		badRequest(w, http.StatusNotAcceptable, "not_acceptable", "GET /topics/{filter} streams Server-Sent Events: send Accept: text/event-stream")
		return
	}
	if len(r.URL.Query()) > 0 {
		badRequest(w, http.StatusBadRequest, "invalid_request", "GET /topics/{filter} takes no query parameters")
		return
	}
	tok, jkt, ok := d.token(w, r)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), d.cfg.Timeout)
	sub, o := asthing.Subscribe(ctx, d.dial(r, jkt), tok, filter)
	cancel()
	if o.Failed() {
		refuse(w, o)
		return
	}
	defer sub.Close()
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(never) // a stream lives as long as its token
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, ": subscribed to "+strings.ReplaceAll(filter, "\n", " ")+"\n\n")
	if err := rc.Flush(); err != nil {
		return
	}
	d.log.Debug("http subscribe", "filter", filter, "token", sdk.Fingerprint(tok), "remote", r.RemoteAddr)
	beat := time.NewTicker(d.cfg.Heartbeat)
	defer beat.Stop()
	var id uint64
	for {
		select {
		case m, ok := <-sub.Messages:
			if !ok {
				writeEvent(w, "end", 0, endOf(sub.End()))
				_ = rc.Flush()
				return
			}
			id++
			writeEvent(w, "message", id, eventOf(m))
		case <-beat.C:
			_, _ = io.WriteString(w, ":\n\n")
		case <-r.Context().Done():
			return
		}
		if err := rc.Flush(); err != nil {
			return // the reader went away
		}
	}
}

// writeEvent writes one SSE event whose data is v as one line of JSON.
func writeEvent(w io.Writer, name string, id uint64, v any) {
	b, _ := json.Marshal(v)
	if id > 0 {
		_, _ = fmt.Fprintf(w, "id: %d\n", id)
	}
	_, _ = fmt.Fprintf(w, "event: %s\ndata: %s\n\n", name, b)
}

// acceptsEventStream reports whether the Accept header admits text/event-stream.
func acceptsEventStream(accept []string) bool {
	for _, a := range accept {
		for _, part := range strings.Split(a, ",") {
			mt, _, _ := strings.Cut(part, ";")
			switch strings.TrimSpace(strings.ToLower(mt)) {
			case "text/event-stream", "text/*", "*/*":
				return true
			}
		}
	}
	return false
}
