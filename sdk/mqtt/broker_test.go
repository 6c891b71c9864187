package mqtt_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"imb/internal/wsconn"
	"imb/sdk"
	sdkmqtt "imb/sdk/mqtt"
)

const waitLong = 10 * time.Second

// Token prefixes that make the test hook answer with a given failure.
const (
	tokenNotAuthorized = "noauth-"
	tokenUnavailable   = "down-"
)

// tokenHook is the broker side of the test: it accepts the tokens its issuer minted while they have
// not expired, from the CONNECT password or the OAUTH2-JWT authentication data, answers MQTT 5
// re-authentication itself (mochi sends no AUTH reply of its own), and ends a session with 0xA0 when
// its token expires.
type tokenHook struct {
	mochi.HookBase
	server *mochi.Server

	mu       sync.Mutex
	valid    map[string]time.Time
	verdict  map[*mochi.Client]bool
	timers   map[*mochi.Client]*time.Timer
	connects map[string]int // by client id
	reauths  chan string    // client id per accepted re-authentication
	expired  chan string    // client id per session ended by expiry
}

func newTokenHook() *tokenHook {
	return &tokenHook{
		valid: map[string]time.Time{}, verdict: map[*mochi.Client]bool{}, timers: map[*mochi.Client]*time.Timer{},
		connects: map[string]int{}, reauths: make(chan string, 64), expired: make(chan string, 64),
	}
}

func (h *tokenHook) ID() string { return "sdk-test-tokens" }

func (h *tokenHook) Provides(b byte) bool {
	switch b {
	case mochi.OnConnect, mochi.OnConnectAuthenticate, mochi.OnACLCheck, mochi.OnAuthPacket, mochi.OnDisconnect:
		return true
	}
	return false
}

// mint issues a token valid for life.
func (h *tokenHook) mint(prefix string, life time.Duration) *sdk.Token {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	tok := &sdk.Token{AccessToken: prefix + hex.EncodeToString(b), TokenType: "Bearer", Expiry: time.Now().Add(life),
		ExpiresIn: int64(life / time.Second)}
	h.mu.Lock()
	h.valid[tok.AccessToken] = tok.Expiry
	h.mu.Unlock()
	return tok
}

// check maps a token to the reason code the broker answers with.
func (h *tokenHook) check(token string) (packets.Code, time.Time) {
	h.mu.Lock()
	exp, ok := h.valid[token]
	h.mu.Unlock()
	switch {
	case !ok || time.Now().After(exp):
		return packets.ErrBadUsernameOrPassword, time.Time{}
	case strings.HasPrefix(token, tokenNotAuthorized):
		return packets.ErrNotAuthorized, time.Time{}
	case strings.HasPrefix(token, tokenUnavailable):
		return packets.ErrServerUnavailable, time.Time{}
	}
	return packets.CodeSuccess, exp
}

func (h *tokenHook) OnConnect(cl *mochi.Client, pk packets.Packet) error {
	token := string(pk.Connect.Password)
	if m := pk.Properties.AuthenticationMethod; m != "" {
		if m != sdkmqtt.AuthMethodJWT {
			_ = h.server.SendConnack(cl, packets.ErrBadAuthenticationMethod, false, nil)
			return packets.ErrBadAuthenticationMethod
		}
		token = string(pk.Properties.AuthenticationData)
	}
	code, exp := h.check(token)
	if code != packets.CodeSuccess {
		_ = h.server.SendConnack(cl, v3Code(cl, code), false, nil)
		return code
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.verdict[cl] = true
	h.connects[cl.ID]++
	h.armLocked(cl, exp)
	return nil
}

// v3Code picks the 3.1.1 return code itself where mochi's V5CodesToV3 would blur it (it maps 0x86 to
// 5, "not authorized", and passes 0x87 through unchanged).
func v3Code(cl *mochi.Client, code packets.Code) packets.Code {
	if cl.Properties.ProtocolVersion >= 5 {
		return code
	}
	switch code {
	case packets.ErrBadUsernameOrPassword:
		return packets.Code{Code: 0x04, Reason: code.Reason}
	case packets.ErrNotAuthorized:
		return packets.Err3NotAuthorized
	}
	return code
}

// armLocked (re)starts the expiry timer of a session.
func (h *tokenHook) armLocked(cl *mochi.Client, exp time.Time) {
	if t := h.timers[cl]; t != nil {
		t.Stop()
	}
	h.timers[cl] = time.AfterFunc(time.Until(exp), func() {
		h.expired <- cl.ID
		_ = h.server.DisconnectClient(cl, packets.ErrMaxConnectTime)
	})
}

func (h *tokenHook) OnConnectAuthenticate(cl *mochi.Client, _ packets.Packet) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.verdict[cl]
}

func (h *tokenHook) OnACLCheck(*mochi.Client, string, bool) bool { return true }

func (h *tokenHook) OnAuthPacket(cl *mochi.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.ReasonCode != packets.CodeReAuthenticate.Code || pk.Properties.AuthenticationMethod != sdkmqtt.AuthMethodJWT {
		return pk, packets.ErrBadAuthenticationMethod
	}
	code, exp := h.check(string(pk.Properties.AuthenticationData))
	if code != packets.CodeSuccess {
		return pk, code
	}
	h.mu.Lock()
	h.armLocked(cl, exp)
	h.mu.Unlock()
	reply := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Auth},
		ReasonCode:  packets.CodeSuccess.Code,
		Properties:  packets.Properties{AuthenticationMethod: sdkmqtt.AuthMethodJWT},
	}
	if err := cl.WritePacket(reply); err != nil {
		return pk, err
	}
	h.reauths <- cl.ID
	return pk, nil
}

func (h *tokenHook) OnDisconnect(cl *mochi.Client, _ error, _ bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if t := h.timers[cl]; t != nil {
		t.Stop()
	}
	delete(h.timers, cl)
	delete(h.verdict, cl)
}

func (h *tokenHook) connectCount(id string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.connects[id]
}

// broker is a real mochi server with TCP, TLS and WebSocket listeners on 127.0.0.1.
type broker struct {
	hook         *tokenHook
	tcp, tls, ws string
	clientTLS    *tls.Config
	server       *mochi.Server
}

func startBroker(t *testing.T) *broker {
	t.Helper()
	hook := newTokenHook()
	server := mochi.New(&mochi.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	hook.server = server
	if err := server.AddHook(hook, nil); err != nil {
		t.Fatal(err)
	}
	serverTLS, clientTLS := testTLS(t)
	tcp := listeners.NewTCP(listeners.Config{ID: "tcp", Address: "127.0.0.1:0"})
	tlsL := listeners.NewTCP(listeners.Config{ID: "tls", Address: "127.0.0.1:0", TLSConfig: serverTLS})
	wsl := newWSListener(t)
	for _, l := range []listeners.Listener{tcp, tlsL, listeners.NewNet("ws", wsl)} {
		if err := server.AddListener(l); err != nil {
			t.Fatal(err)
		}
	}
	if err := server.Serve(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = server.Close() })
	return &broker{hook: hook, server: server, clientTLS: clientTLS,
		tcp: "tcp://" + tcp.Address(), tls: "tls://" + tlsL.Address(), ws: "ws://" + wsl.addr + "/mqtt"}
}

// testTLS makes a self-signed certificate for 127.0.0.1 and the client config that trusts it.
func testTLS(t *testing.T) (*tls.Config, *tls.Config) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12},
		&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}

// wsListener hands mochi the MQTT streams of WebSocket connections accepted by an httptest server,
// so the WebSocket transport is exercised on a free port without guessing one.
type wsListener struct {
	addr  string
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newWSListener(t *testing.T) *wsListener {
	l := &wsListener{conns: make(chan net.Conn), done: make(chan struct{})}
	up := websocket.Upgrader{Subprotocols: []string{"mqtt"}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		select {
		case l.conns <- wsconn.New(ws):
		case <-l.done:
			_ = ws.Close()
		}
	}))
	t.Cleanup(srv.Close)
	l.addr = strings.TrimPrefix(srv.URL, "http://")
	return l
}

func (l *wsListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *wsListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *wsListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

// mintingSource is a token source that hands out a fresh token on every call (or a failing one).
type mintingSource struct {
	hook   *tokenHook
	life   time.Duration
	mu     sync.Mutex
	prefix string
	calls  int
}

func (s *mintingSource) Token(context.Context) (*sdk.Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	return s.hook.mint(s.prefix, s.life), nil
}

func (s *mintingSource) setPrefix(p string) {
	s.mu.Lock()
	s.prefix = p
	s.mu.Unlock()
}

// forgingSource hands out tokens the broker never issued.
type forgingSource struct{}

func (forgingSource) Token(context.Context) (*sdk.Token, error) {
	return &sdk.Token{AccessToken: "forged", Expiry: time.Now().Add(time.Hour), ExpiresIn: 3600}, nil
}
