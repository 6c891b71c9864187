package gateway

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	piondtls "github.com/pion/dtls/v3"
	"github.com/plgd-dev/go-coap/v3/dtls"
	dtlsserver "github.com/plgd-dev/go-coap/v3/dtls/server"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/mux"
	coapnet "github.com/plgd-dev/go-coap/v3/net"
	"github.com/plgd-dev/go-coap/v3/net/blockwise"
	"github.com/plgd-dev/go-coap/v3/options"

	"imb/sdk"
)

// authIDLifetime is how long an authId is kept behind its digest, as ForgeRock's gateway does.
const authIDLifetime = 5 * time.Minute

// Config configures a Gateway.
type Config struct {
	// Client talks to AM in the gateway's realm; the gateway relays through it.
	Client *sdk.Client
	// Tree is the authentication tree the gateway and the things behind it log in through.
	Tree string
	// Handlers authenticate (or register) the gateway itself as a thing of type gateway.
	Handlers []sdk.CallbackHandler
	// Address is the UDP address to serve CoAP over DTLS on, e.g. "127.0.0.1:5684".
	Address string
	// Logger receives the gateway's logs; nil discards.
	Logger *slog.Logger
	// Broker is the MQTT broker's TCP address for CoAP publish (POST /ps/{topic}); empty disables it.
	Broker string
	// Timeout bounds each broker exchange of a CoAP publish (default 10 s).
	Timeout time.Duration
}

// Gateway is a running IoT Gateway.
type Gateway struct {
	client  *sdk.Client
	tree    string
	broker  string
	timeout time.Duration
	log     *slog.Logger
	auth    *authCache
	self    *sdk.Thing

	metrics      *metrics
	observations observations
	closeOnce    sync.Once
	closeErr     error
	listener     *coapnet.DTLSListener
	server       *dtlsserver.Server
	done         chan error
	stopped      chan struct{} // closed when serving ends
}

// Start logs the gateway in with AM as itself and serves CoAP over DTLS on cfg.Address until Close.
func Start(ctx context.Context, cfg Config) (*Gateway, error) {
	if cfg.Client == nil {
		return nil, errors.New("gateway: no AM client")
	}
	if cfg.Tree == "" {
		return nil, errors.New("gateway: no authentication tree")
	}
	g := &Gateway{client: cfg.Client, tree: cfg.Tree, log: cfg.Logger, auth: newAuthCache(authIDLifetime),
		metrics: newMetrics(), stopped: make(chan struct{})}
	if g.log == nil {
		g.log = slog.New(slog.DiscardHandler)
	}
	g.broker, g.timeout = cfg.Broker, cfg.Timeout
	if g.timeout <= 0 {
		g.timeout = publishTimeout
	}
	g.self = cfg.Client.NewThing(cfg.Tree, cfg.Handlers...)
	s, err := g.self.Login(ctx)
	if err != nil {
		return nil, fmt.Errorf("gateway: log in as a gateway thing: %w", err)
	}
	g.log.InfoContext(ctx, "gateway authenticated with AM", "session", s.Fingerprint())

	cert, err := selfSignedCertificate("imb gateway")
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	l, err := coapnet.NewDTLSListener("udp", cfg.Address, ServerDTLSConfig(cert))
	if err != nil {
		_ = g.self.Logout(ctx) // best effort: the session would otherwise live on in AM unused
		return nil, fmt.Errorf("gateway: listen on %s: %w", cfg.Address, err)
	}
	g.listener = l
	g.server = dtls.NewServer(
		options.WithMux(g.router()),
		options.WithBlockwise(true, blockwise.SZX1024, 30*time.Second),
		options.WithErrors(func(err error) { g.log.Debug("coap", "err", err) }),
	)
	g.done = make(chan error, 1)
	go func() {
		err := g.server.Serve(l)
		close(g.stopped)
		g.done <- err
	}()
	g.log.InfoContext(ctx, "gateway serving CoAP over DTLS", "address", l.Addr().String())
	return g, nil
}

// ServerDTLSConfig is the gateway's DTLS: a client certificate is required but any is accepted
// (the thing proves itself to AM, not to the gateway), and extended master secret is required.
func ServerDTLSConfig(cert tls.Certificate) *piondtls.Config {
	return &piondtls.Config{
		Certificates:         []tls.Certificate{cert},
		ExtendedMasterSecret: piondtls.RequireExtendedMasterSecret,
		ClientAuth:           piondtls.RequireAnyClientCert,
	}
}

// selfSignedCertificate makes a fresh P-256 key and a self-signed certificate for it.
func selfSignedCertificate(cn string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("generate DTLS key: %w", err)
	}
	return sdk.SelfSignedCertificate(key, cn)
}

// Addr is the UDP address the gateway listens on.
func (g *Gateway) Addr() net.Addr { return g.listener.Addr() }

// Close stops serving and logs the gateway's session out, best effort. Later calls return the first
// call's result.
func (g *Gateway) Close() error {
	g.closeOnce.Do(func() { g.closeErr = g.close() })
	return g.closeErr
}

func (g *Gateway) close() error {
	g.server.Stop()
	err := <-g.done
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if lerr := g.self.Logout(ctx); lerr != nil {
		g.log.Debug("gateway logout", "err", lerr)
	}
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("gateway: serve: %w", err)
	}
	return nil
}

func (g *Gateway) router() *mux.Router {
	r := mux.NewRouter()
	must := func(path string, h mux.HandlerFunc) {
		if err := r.Handle(path, g.metrics.counted(path, h)); err != nil {
			panic(fmt.Sprintf("gateway: route %s: %v", path, err))
		}
	}
	info := g.client.AMInfo()
	must("/authenticate", g.authenticate)
	must("/aminfo", g.amInfo)
	must("/accesstoken", g.thingsAction(info.AccessTokenURL))
	must("/introspect", g.thingsAction(info.IntrospectURL))
	must("/usercode", g.thingsAction(info.UserCodeURL))
	must("/usertoken", g.thingsAction(info.UserTokenURL))
	must("/attributes", g.attributes)
	must("/session", g.session)
	// The topic is the rest of the path, slashes included.
	must("/ps/{topic:.+}", g.publish)
	return r
}

// reply writes a response; a failure to write only concerns the thing, so it is logged.
func (g *Gateway) reply(w mux.ResponseWriter, code codes.Code, format message.MediaType, body []byte) {
	var rs io.ReadSeeker
	if body != nil {
		rs = bytes.NewReader(body)
	}
	if err := w.SetResponse(code, format, rs); err != nil {
		g.log.Debug("coap reply", "err", err)
	}
}

func (g *Gateway) fail(w mux.ResponseWriter, code codes.Code, msg string) {
	g.reply(w, code, message.TextPlain, []byte(msg))
}

// readRequest returns the content format and body of r, bounded.
func readRequest(r *mux.Message) (message.MediaType, []byte, error) {
	format, err := r.ContentFormat()
	if err != nil {
		return 0, nil, fmt.Errorf("%w: missing content format", errBadRequest)
	}
	body, err := readBody(r)
	return format, body, err
}

// readBody returns the body of r, at most maxPayload+1 bytes so that the parsers can refuse more.
func readBody(r *mux.Message) ([]byte, error) {
	b := r.Body()
	if b == nil {
		return nil, nil
	}
	body, err := io.ReadAll(io.LimitReader(b, maxPayload+1))
	if err != nil {
		return nil, fmt.Errorf("%w: read body: %w", errBadRequest, err)
	}
	return body, nil
}

// relay sends one request to AM and answers with ok on success, the mapped code otherwise, and 5.03
// when AM cannot be reached.
func (g *Gateway) relay(w mux.ResponseWriter, r *mux.Message, op string, req sdk.RelayRequest, ok codes.Code) {
	status, body, err := g.client.Relay(r.Context(), op, req)
	if err != nil {
		g.log.Warn("AM unreachable", "op", op, "err", err)
		g.fail(w, codes.ServiceUnavailable, "AM unreachable")
		return
	}
	g.log.Debug("relayed", "op", op, "status", status, "token", sdk.Fingerprint(req.SSOToken))
	g.reply(w, coapCode(status, ok), FormatJSON, body)
}

func (g *Gateway) amInfo(w mux.ResponseWriter, _ *mux.Message) {
	b, err := json.Marshal(g.client.AMInfo())
	if err != nil {
		g.fail(w, codes.InternalServerError, err.Error())
		return
	}
	g.reply(w, codes.Content, FormatJSON, b)
}

func (g *Gateway) thingsAction(amURL string) mux.HandlerFunc {
	return func(w mux.ResponseWriter, r *mux.Message) {
		format, payload, err := readRequest(r)
		if err == nil {
			var rb relayBody
			if rb, err = decodeThingRequest(format, payload); err == nil {
				g.relay(w, r, "things action", sdk.RelayRequest{
					Method: http.MethodPost, URL: amURL, API: g.client.AMInfo().ThingsVersion,
					ContentType: rb.contentType, Body: rb.body, SSOToken: rb.token,
				}, codes.Changed)
				return
			}
		}
		g.fail(w, codes.BadRequest, err.Error())
	}
}

func (g *Gateway) attributes(w mux.ResponseWriter, r *mux.Message) {
	names, _ := r.Queries()
	format, payload, err := readRequest(r)
	if err == nil {
		var rb relayBody
		if rb, err = decodeThingRequest(format, payload); err == nil {
			g.relay(w, r, "attributes", sdk.RelayRequest{
				Method: http.MethodGet, URL: g.client.AttributesURL(names), API: g.client.AMInfo().ThingsVersion,
				ContentType: rb.contentType, Body: rb.body, SSOToken: rb.token,
			}, codes.Changed)
			return
		}
	}
	g.fail(w, codes.BadRequest, err.Error())
}

func (g *Gateway) session(w mux.ResponseWriter, r *mux.Message) {
	queries, _ := r.Queries()
	info := g.client.AMInfo()
	var amURL string
	action := queryAction(queries)
	switch action {
	case "validate":
		amURL = info.SessionValidateURL
	case "logout":
		amURL = info.SessionLogoutURL
	default:
		g.fail(w, codes.BadRequest, "session: want ?_action=validate or ?_action=logout")
		return
	}
	format, payload, err := readRequest(r)
	var rb relayBody
	if err == nil {
		rb, err = decodeSessionRequest(format, payload)
	}
	if err != nil {
		g.fail(w, codes.BadRequest, err.Error())
		return
	}
	req := sdk.RelayRequest{Method: http.MethodPost, URL: amURL, API: info.SessionsVersion,
		ContentType: rb.contentType, Body: rb.body, SSOToken: rb.token}
	status, body, err := g.client.Relay(r.Context(), "session "+action, req)
	if err != nil {
		g.log.Warn("AM unreachable", "op", "session "+action, "err", err)
		g.fail(w, codes.ServiceUnavailable, "AM unreachable")
		return
	}
	if action == "validate" && status == http.StatusOK {
		var v struct {
			Valid bool `json:"valid"`
		}
		if json.Unmarshal(body, &v) != nil || !v.Valid {
			// ForgeRock's gateway answers an invalid session with 4.01, not with valid=false.
			g.reply(w, codes.Unauthorized, FormatJSON, body)
			return
		}
	}
	g.reply(w, coapCode(status, codes.Changed), FormatJSON, body)
}

// authenticate relays one round of the callback exchange, keeping AM's authId behind its digest.
func (g *Gateway) authenticate(w mux.ResponseWriter, r *mux.Message) {
	// ForgeRock's SDK always sends JSON here; the format is not checked, the body must parse.
	payload, err := readBody(r)
	var round map[string]json.RawMessage
	if err == nil {
		round, err = decodeAuthRound(payload)
	}
	if err != nil {
		g.fail(w, codes.BadRequest, err.Error())
		return
	}
	if d, ok := round["auth_id_digest"]; ok {
		var digest string
		_ = json.Unmarshal(d, &digest)
		authID, found := g.auth.get(digest)
		if !found {
			g.fail(w, codes.Unauthorized, "authentication: unknown or expired auth_id_digest")
			return
		}
		round["authId"], _ = json.Marshal(authID)
		delete(round, "auth_id_digest")
	}
	body, err := json.Marshal(round)
	if err != nil {
		g.fail(w, codes.BadRequest, err.Error())
		return
	}
	url, api := g.client.AuthenticateURL(g.tree)
	status, reply, err := g.client.Relay(r.Context(), "authenticate", sdk.RelayRequest{
		Method: http.MethodPost, URL: url, API: api, ContentType: mediaJSON, Body: body,
	})
	if err != nil {
		g.log.Warn("AM unreachable", "op", "authenticate", "err", err)
		g.fail(w, codes.ServiceUnavailable, "AM unreachable")
		return
	}
	if status != http.StatusOK {
		g.reply(w, codes.Unauthorized, FormatJSON, reply)
		return
	}
	var next map[string]json.RawMessage
	if err := json.Unmarshal(reply, &next); err != nil {
		g.fail(w, codes.BadGateway, "authentication: AM reply is not a JSON object")
		return
	}
	if _, done := next["tokenId"]; !done {
		var authID string
		if err := json.Unmarshal(next["authId"], &authID); err != nil || authID == "" {
			g.fail(w, codes.Unauthorized, "authentication: AM reply has neither tokenId nor authId")
			return
		}
		digest := authIDDigest(authID)
		g.auth.put(digest, authID)
		delete(next, "authId")
		next["auth_id_digest"], _ = json.Marshal(digest)
	}
	out, err := json.Marshal(next)
	if err != nil {
		g.fail(w, codes.InternalServerError, err.Error())
		return
	}
	g.reply(w, codes.Valid, FormatJSON, out)
}

// decodeAuthRound parses a thing's authentication round: a JSON object whose auth_id_digest, if any,
// is a well-formed digest.
func decodeAuthRound(payload []byte) (map[string]json.RawMessage, error) {
	if len(payload) > maxPayload {
		return nil, fmt.Errorf("%w: payload larger than %d bytes", errBadRequest, maxPayload)
	}
	round := map[string]json.RawMessage{}
	if len(bytes.TrimSpace(payload)) > 0 {
		if err := json.Unmarshal(payload, &round); err != nil {
			return nil, fmt.Errorf("%w: authentication payload: %w", errBadRequest, err)
		}
	}
	if round == nil {
		round = map[string]json.RawMessage{}
	}
	if d, ok := round["auth_id_digest"]; ok {
		var digest string
		if err := json.Unmarshal(d, &digest); err != nil {
			return nil, fmt.Errorf("%w: auth_id_digest is not a string", errBadRequest)
		}
		if _, err := parseAuthIDDigest(digest); err != nil {
			return nil, err
		}
	}
	return round, nil
}
