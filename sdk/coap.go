package sdk

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	piondtls "github.com/pion/dtls/v3"
	dtlsnet "github.com/pion/dtls/v3/pkg/net"
	"github.com/plgd-dev/go-coap/v3/dtls"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/net/blockwise"
	"github.com/plgd-dev/go-coap/v3/options"
	udpclient "github.com/plgd-dev/go-coap/v3/udp/client"
)

// Content formats of the gateway protocol: CoAP's JSON and ForgeRock's JOSE number.
const (
	coapFormatJSON = message.MediaType(50)
	coapFormatJOSE = message.MediaType(11650)
)

// transport carries one AM request. The HTTP transport sends it to AM; the CoAP transport maps it onto
// a gateway route, so every flow of the SDK is written once.
type transport interface {
	roundTrip(ctx context.Context, op string, r httpRequest) (status int, body []byte, err error)
}

// coapTransport speaks the IoT Gateway protocol (am-protocol.md §13) over DTLS. Both coap:// and
// coaps:// use DTLS, as in AM's own SDK; the client presents a self-signed certificate made from its
// key and does not verify the gateway (the gateway is only a relay: AM checks every signature).
type coapTransport struct {
	addr string
	cert tls.Certificate

	mu   sync.Mutex
	conn *udpclient.Conn
}

func newCOAPTransport(u *url.URL, key *Key) (*coapTransport, error) {
	host := u.Host
	if u.Port() == "" {
		host += ":5684"
	}
	var signer crypto.Signer
	if key != nil {
		signer = key.Signer()
	} else {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("sdk: DTLS key: %w", err)
		}
		signer = k
	}
	cert, err := SelfSignedCertificate(signer, "imb thing")
	if err != nil {
		return nil, fmt.Errorf("sdk: DTLS certificate: %w", err)
	}
	return &coapTransport{addr: host, cert: cert}, nil
}

// dial returns the live connection or makes a new one; the DTLS session is reused across requests.
func (t *coapTransport) dial(ctx context.Context) (*udpclient.Conn, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.conn != nil {
		select {
		case <-t.conn.Done():
			t.conn = nil
		default:
			return t.conn, nil
		}
	}
	cfg := &piondtls.Config{
		Certificates:         []tls.Certificate{t.cert},
		InsecureSkipVerify:   true, //nolint:gosec // the gateway is a relay; AM verifies every request
		ExtendedMasterSecret: piondtls.RequireExtendedMasterSecret,
	}
	// The handshake is done here, bounded by ctx: left to the first write it would wait without a
	// deadline on a gateway that never answers. The connection then outlives the request.
	udp, err := (&net.Dialer{}).DialContext(ctx, "udp", t.addr)
	if err != nil {
		return nil, fmt.Errorf("dial gateway %s: %w", t.addr, err)
	}
	dconn, err := piondtls.Client(dtlsnet.PacketConnFromConn(udp), udp.RemoteAddr(), cfg)
	if err != nil {
		_ = udp.Close()
		return nil, fmt.Errorf("dial gateway %s: %w", t.addr, err)
	}
	if err := dconn.HandshakeContext(ctx); err != nil {
		_ = dconn.Close()
		_ = udp.Close()
		return nil, fmt.Errorf("dial gateway %s: DTLS handshake: %w", t.addr, err)
	}
	conn := dtls.Client(dconn, options.WithBlockwise(true, blockwise.SZX1024, 30*time.Second), options.WithCloseSocket())
	t.conn = conn
	return conn, nil
}

// drop forgets a connection after a failed exchange so the next request makes a new DTLS session.
func (t *coapTransport) drop(conn *udpclient.Conn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.conn == conn {
		_ = conn.Close()
		t.conn = nil
	}
}

func (t *coapTransport) close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.conn != nil {
		_ = t.conn.Close()
		t.conn = nil
	}
}

// route is the gateway request for one AM request.
type route struct {
	path    string
	queries []string
	format  message.MediaType
	body    []byte
	local   func() (int, []byte) // answered without the gateway
	session string               // the _action of a /session call
}

// routeFor maps an AM URL to its gateway route and encodes the body as the gateway expects.
func routeFor(r httpRequest) (route, error) {
	u, err := url.Parse(r.url)
	if err != nil {
		return route{}, fmt.Errorf("gateway route: %w", err)
	}
	q := u.Query()
	var rt route
	switch {
	case strings.HasSuffix(u.Path, "/json/serverinfo/*"):
		// The cookie name only matters over HTTP; the gateway sends the token in the body.
		return route{local: func() (int, []byte) { return http.StatusOK, []byte(`{}`) }}, nil
	case strings.HasSuffix(u.Path, "/.well-known/openid-configuration"):
		return route{local: func() (int, []byte) {
			return http.StatusNotFound, []byte(`{"code":404,"message":"no OIDC discovery through a gateway"}`)
		}}, nil
	case strings.HasSuffix(u.Path, "/json/authenticate"):
		if r.ssoToken != "" || r.header.Get("X-OpenAM-Username") != "" {
			return route{}, errors.New("gateway route: header login is not available through a gateway")
		}
		return route{path: "/authenticate", format: coapFormatJSON, body: r.body}, nil
	case strings.HasSuffix(u.Path, "/json/sessions"):
		rt = route{path: "/session", queries: []string{"_action=" + q.Get("_action")}, session: q.Get("_action")}
		if r.contentType == contentJOSE {
			rt.format, rt.body = coapFormatJOSE, r.body
			return rt, nil
		}
		b, _ := json.Marshal(map[string]string{"tokenId": r.ssoToken})
		rt.format, rt.body = coapFormatJSON, b
		return rt, nil
	case strings.HasSuffix(u.Path, "/json/things/*"):
		switch action := q.Get("_action"); action {
		case "get_access_token":
			rt.path = "/accesstoken"
		case "introspect_token":
			rt.path = "/introspect"
		case "get_user_code":
			rt.path = "/usercode"
		case "get_user_token":
			rt.path = "/usertoken"
		case "":
			rt.path = "/attributes"
			if f := q.Get("_fields"); f != "" {
				rt.queries = strings.Split(f, ",")
			}
		default:
			return route{}, fmt.Errorf("gateway route: things action %q has no gateway route", action)
		}
	default:
		return route{}, fmt.Errorf("gateway route: %s has no gateway route", u.Path)
	}
	if r.contentType == contentJOSE {
		rt.format, rt.body = coapFormatJOSE, r.body
		return rt, nil
	}
	b, err := json.Marshal(struct {
		Token   string `json:"token"`
		Payload string `json:"payload,omitempty"`
	}{r.ssoToken, string(r.body)})
	if err != nil {
		return route{}, fmt.Errorf("gateway route: %w", err)
	}
	rt.format, rt.body = coapFormatJSON, b
	return rt, nil
}

// httpStatus maps a gateway reply code back to the HTTP status AM would have sent.
var httpStatus = map[codes.Code]int{
	codes.Created: http.StatusCreated, codes.Deleted: http.StatusOK, codes.Valid: http.StatusOK,
	codes.Changed: http.StatusOK, codes.Content: http.StatusOK,
	codes.BadRequest: http.StatusBadRequest, codes.Unauthorized: http.StatusUnauthorized,
	codes.Forbidden: http.StatusForbidden, codes.NotFound: http.StatusNotFound,
	codes.MethodNotAllowed: http.StatusMethodNotAllowed, codes.NotAcceptable: http.StatusNotAcceptable,
	codes.PreconditionFailed: http.StatusPreconditionFailed, codes.RequestEntityTooLarge: http.StatusRequestEntityTooLarge,
	codes.UnsupportedMediaType: http.StatusUnsupportedMediaType, codes.TooManyRequests: http.StatusTooManyRequests,
	codes.InternalServerError: http.StatusInternalServerError, codes.NotImplemented: http.StatusNotImplemented,
	codes.BadGateway: http.StatusBadGateway, codes.ServiceUnavailable: http.StatusServiceUnavailable,
	codes.GatewayTimeout: http.StatusGatewayTimeout,
}

func (t *coapTransport) roundTrip(ctx context.Context, op string, r httpRequest) (int, []byte, error) {
	rt, err := routeFor(r)
	if err != nil {
		return 0, nil, fmt.Errorf("%s: %w", op, err)
	}
	if rt.local != nil {
		status, body := rt.local()
		return status, body, nil
	}
	conn, err := t.dial(ctx)
	if err != nil {
		return 0, nil, fmt.Errorf("%s: %w", op, err)
	}
	opts := make(message.Options, 0, len(rt.queries))
	for _, q := range rt.queries {
		opts = append(opts, message.Option{ID: message.URIQuery, Value: []byte(q)})
	}
	resp, err := conn.Post(ctx, rt.path, rt.format, bytes.NewReader(rt.body), opts...)
	if err != nil {
		t.drop(conn)
		return 0, nil, fmt.Errorf("%s: gateway %s: %w", op, rt.path, err)
	}
	var body []byte
	if b := resp.Body(); b != nil {
		if body, err = io.ReadAll(io.LimitReader(b, maxBody+1)); err != nil {
			return 0, nil, fmt.Errorf("%s: read gateway reply: %w", op, err)
		}
	}
	status, ok := httpStatus[resp.Code()]
	if !ok {
		status = http.StatusInternalServerError
	}
	if rt.session == "validate" && len(body) == 0 && status == http.StatusOK {
		// ForgeRock's gateway answers a valid session with 2.04 and no body.
		body = []byte(`{"valid":true}`)
	}
	return status, body, nil
}

// gatewayEndpoints learns AM's URLs from the gateway's /aminfo, so that signed requests name AM's
// URLs as aud exactly as AM compares them.
func (t *coapTransport) gatewayEndpoints(ctx context.Context, timeout time.Duration) (endpoints, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := t.dial(ctx)
	if err != nil {
		return endpoints{}, fmt.Errorf("sdk: %w", err)
	}
	resp, err := conn.Get(ctx, "/aminfo")
	if err != nil {
		t.drop(conn)
		return endpoints{}, fmt.Errorf("sdk: gateway /aminfo: %w", err)
	}
	if resp.Code() != codes.Content {
		return endpoints{}, fmt.Errorf("sdk: gateway /aminfo: %v", resp.Code())
	}
	var body []byte
	if b := resp.Body(); b != nil {
		body, _ = io.ReadAll(io.LimitReader(b, maxBody))
	}
	var info AMInfo
	if err := json.Unmarshal(body, &info); err != nil {
		return endpoints{}, fmt.Errorf("sdk: gateway /aminfo: decode: %w", err)
	}
	return endpointsFromInfo(info)
}

// endpointsFromInfo recovers AM's base URL and the realm spelling the gateway uses.
func endpointsFromInfo(info AMInfo) (endpoints, error) {
	base, ok := strings.CutSuffix(info.SessionValidateURL, "/json/sessions?_action=validate")
	if !ok {
		return endpoints{}, fmt.Errorf("sdk: gateway /aminfo: unexpected SessionValidateURL %q", info.SessionValidateURL)
	}
	for _, realm := range []string{info.Realm, ""} {
		ep := endpoints{base: base, realm: realm}
		if ep.thingsAction("get_access_token") == info.AccessTokenURL {
			return ep, nil
		}
	}
	return endpoints{}, fmt.Errorf("sdk: gateway /aminfo: AccessTokenURL %q does not match realm %q", info.AccessTokenURL, info.Realm)
}
