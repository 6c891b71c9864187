// Package hooks is imb's glue to the mochi-mqtt broker: one Hook that authenticates
// every connection with an access token, binds the MQTT session to the token's
// identity, and asks authz for every subscribe, publish, will, retained message and
// delivery.
//
// The hook decides nothing itself: tokens are judged by an introspect validator and
// topics by an authz policy. What it owns is the MQTT side of those decisions — the
// right reason codes, per-session state keyed by *mqtt.Client, expiry and revocation
// timers, MQTT 5 re-authentication, policy reloads — and the gaps of mochi v2.7.9 it
// must close (see the package's tests for each): the will bypasses the write ACL,
// topic aliases reach the ACL as an empty topic, sessions are inherited by client id
// alone, AUTH replies returned by hooks are discarded, and OnConnectAuthenticate can
// only answer 0x86.
package hooks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"

	"imb/authz"
	"imb/introspect"
)

// AuthMethod is the MQTT 5 Authentication Method under which a client presents its
// access token as Authentication Data, on CONNECT and on AUTH re-authentication.
const AuthMethod = "OAUTH2-JWT"

// DoorListener is the listener id of the HTTP door's in-process connections (broker/door.go).
// The door connects with an empty client id; the hook gives each such connection the id
// {sub}DoorClientIDInfix{generated}, outside client_id_binding (see authenticate).
const DoorListener = "http"

// DoorClientIDInfix separates the thing id from the generated part of a door connection's id.
const DoorClientIDInfix = ":http:"

// TokenValidator turns a token into verified facts. *introspect.Cache implements it.
type TokenValidator interface {
	// Validate may answer from a cache.
	Validate(ctx context.Context, token string) (*introspect.Token, error)
	// Revalidate asks the source of truth again, bypassing any cache.
	Revalidate(ctx context.Context, token string) (*introspect.Token, error)
}

// DefaultMaxSubscriptions is the subscriptions one client may hold unless
// configured otherwise. Each costs the broker about 1.5 KB (topic index, session
// state, storage); a thing needs a handful and a gateway or cloud application a few
// hundred, so 1,000 leaves room for both and caps one client near 1.5 MB.
const DefaultMaxSubscriptions = 1000

// WillPolicy says what happens to a CONNECT whose will the publish grants do not allow.
type WillPolicy string

const (
	// WillReject refuses the connection with CONNACK 0x87 (v3.1.1: 0x05).
	WillReject WillPolicy = "reject"
	// WillDrop accepts the connection and silently discards the will.
	WillDrop WillPolicy = "drop"
)

// Config configures a Hook. Server, Validator and Policy are required.
type Config struct {
	// Server is the broker the hook is added to; the hook writes CONNACK, AUTH and
	// DISCONNECT packets through it.
	Server *mqtt.Server
	// Validator judges tokens.
	Validator TokenValidator
	// Policy is the initial topics.yaml policy; SetPolicy swaps it.
	Policy *authz.Policy
	// ClientIDBinding lists the client identifiers a thing may use, as patterns in
	// which {sub} stands for its thing id and a trailing * for any suffix. The default
	// is ["{sub}"]: the client id must equal the thing id. ["*"] lifts the binding.
	ClientIDBinding []string
	// RequireUsername makes a CONNECT username mandatory and equal to the thing id.
	RequireUsername bool
	// TokenField names the CONNECT field that carries the token when no MQTT 5
	// authentication method is used: TokenInPassword (default), TokenInUsername
	// (the mosquitto-go-auth convention: token as username, empty password), or
	// TokenInEither (the password when one is sent, else the username).
	TokenField string
	// WillDenied chooses between refusing the connection and dropping a will the
	// grants do not allow. The default is WillReject.
	WillDenied WillPolicy
	// MaxSubscriptions bounds the subscriptions one client holds; filters of a
	// SUBSCRIBE beyond it get SUBACK 0x97 Quota exceeded (v3.1.1: 0x80). Zero means
	// DefaultMaxSubscriptions, negative no limit.
	MaxSubscriptions int
	// ConnectRatePerAddr bounds the CONNECTs one source IP address may send per
	// second, known tokens or not, with a burst of twice that; beyond it, CONNACK
	// 0x9F (3.1.1: 0x03) before the token is looked at. Zero or negative: no bound
	// (things behind one NAT address share it).
	ConnectRatePerAddr float64
	// ValidateTimeout bounds one token validation at CONNECT or AUTH (default 5 s).
	ValidateTimeout time.Duration
	// RevalidateInterval is how often a token that was introspected is checked again
	// for revocation (default 60 s, jittered by up to 10 %); negative disables.
	RevalidateInterval time.Duration
	// Audit receives one line per accepted connection and per decision that denies
	// or disconnects. Nil discards them.
	Audit *slog.Logger
	// Denied, if set, hears of every denial the audit log records (the same rate
	// limit applies), for the admin status page. It must return quickly.
	Denied func(Denial)
	// Metrics, if set, counts connects, denials and disconnects.
	Metrics *Metrics
	// Sessions, if set, persists the identity of persistent sessions so that
	// messages queued for an offline thing keep being authorized after a restart.
	Sessions SubjectStore
	// Storage, if set, is the storage hook registered on the same server; the hook
	// tells it when it discards another identity's stored session.
	Storage mqtt.Hook
	// Journal, if set, holds each accepted QoS 1/2 message from before mochi
	// acknowledges it to the publisher until mochi has handed it to every
	// subscriber (and so to storage): mochi acknowledges first, and a crash in
	// between would otherwise lose a message the publisher was told is safe.
	Journal Journal
	// Cluster, if set, makes a client identifier one session across the nodes of a
	// cluster: a connect claims it there after the local checks.
	Cluster Cluster
	// Revoked, if set, hears of each token a re-check found revoked (by TokenHash),
	// so that the other nodes of a cluster end its sessions and refuse it too.
	Revoked func(tokenHash string)
	// RevocationRetention is how long a revocation (Revoke) is remembered to refuse the tokens it names; default
	// DefaultRevocationRetention. It should exceed the lifetime of the identity provider's access tokens.
	RevocationRetention time.Duration
	// ClaimMap reads scopes from claims that changed (UpdateClaims), as the validator read them.
	ClaimMap introspect.ClaimMap
	// LimitCounter, if set, counts the per-identity connect and session limits
	// instead of this node alone (a cluster-wide counter). Nil counts on this node.
	LimitCounter LimitCounter
	// IdleLimitStates bounds the identities without a session whose limit state is
	// kept (default DefaultIdleLimitStates).
	IdleLimitStates int
	// PoPAudience is this broker as IMB-POP proofs name it in aud. Empty: a proof names one of its token's
	// aud values (DefaultPoPAudience for a token without aud).
	PoPAudience string
	// PoPTimeout bounds the wait for an IMB-POP proof after the nonce (default DefaultPoPTimeout).
	PoPTimeout time.Duration
	// Now returns the current time (default time.Now); tests move it.
	Now func() time.Time
}

// Hook is imb's single authentication and authorization hook. Register no other
// hook that provides OnConnectAuthenticate or OnACLCheck: mochi ORs their answers.
type Hook struct {
	mqtt.HookBase

	cfg      Config
	policy   atomic.Pointer[authz.Policy]
	sessions sync.Map // *mqtt.Client -> *session
	audit    *slog.Logger
	metrics  *Metrics
	bindings []binding

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	revalN chan struct{} // bounds concurrent revalidations
	wills  delayedWills

	limits  *limitTable  // per-identity limit state of this node
	sources *limitTable  // per-source-address connect buckets (ConnectRatePerAddr)
	counter LimitCounter // connect and session counts: limits, or a cluster's

	revocations revocationList // what Revoke revoked, refused at CONNECT and AUTH
}

// New checks cfg, fills its defaults and returns a hook ready for Server.AddHook.
func New(cfg Config) (*Hook, error) {
	if cfg.Server == nil || cfg.Validator == nil || cfg.Policy == nil {
		return nil, errors.New("hooks: Server, Validator and Policy are required")
	}
	if len(cfg.ClientIDBinding) == 0 {
		cfg.ClientIDBinding = []string{"{sub}"}
	}
	bindings, err := parseBindings(cfg.ClientIDBinding)
	if err != nil {
		return nil, err
	}
	switch cfg.TokenField {
	case "":
		cfg.TokenField = TokenInPassword
	case TokenInPassword, TokenInEither:
	case TokenInUsername:
		if cfg.RequireUsername {
			return nil, errors.New("hooks: require_username cannot hold when the token is the username")
		}
	default:
		return nil, fmt.Errorf("hooks: token field %q: want %q, %q or %q", cfg.TokenField, TokenInPassword, TokenInUsername, TokenInEither)
	}
	switch cfg.WillDenied {
	case "":
		cfg.WillDenied = WillReject
	case WillReject, WillDrop:
	default:
		return nil, fmt.Errorf("hooks: will policy %q: want %q or %q", cfg.WillDenied, WillReject, WillDrop)
	}
	switch {
	case cfg.MaxSubscriptions == 0:
		cfg.MaxSubscriptions = DefaultMaxSubscriptions
	case cfg.MaxSubscriptions < 0:
		cfg.MaxSubscriptions = 0 // no limit
	}
	if cfg.ValidateTimeout <= 0 {
		cfg.ValidateTimeout = 5 * time.Second
	}
	if cfg.RevalidateInterval == 0 {
		cfg.RevalidateInterval = 60 * time.Second
	}
	if cfg.PoPTimeout <= 0 {
		cfg.PoPTimeout = DefaultPoPTimeout
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.RevocationRetention <= 0 {
		cfg.RevocationRetention = DefaultRevocationRetention
	}
	audit := cfg.Audit
	if audit == nil {
		audit = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &Hook{
		cfg:      cfg,
		audit:    audit,
		metrics:  cfg.Metrics,
		bindings: bindings,
		ctx:      ctx,
		cancel:   cancel,
		revalN:   make(chan struct{}, 64),
		limits:   newLimitTable(cfg.IdleLimitStates),
		sources:  newLimitTable(cfg.IdleLimitStates),
	}
	h.counter = h.limits
	if cfg.LimitCounter != nil {
		h.counter = cfg.LimitCounter
	}
	h.policy.Store(cfg.Policy)
	return h, nil
}

// ID names the hook in mochi's logs.
func (h *Hook) ID() string { return "imb-identity" }

// Provides is a switch because mochi asks every hook about every event, per message.
func (h *Hook) Provides(b byte) bool {
	switch b {
	case mqtt.OnConnect, mqtt.OnConnectAuthenticate, mqtt.OnSessionEstablish, mqtt.OnDisconnect,
		mqtt.OnACLCheck, mqtt.OnSubscribe, mqtt.OnSubscribed, mqtt.OnPublish, mqtt.OnWill,
		mqtt.OnAuthPacket, mqtt.OnClientExpired, mqtt.OnPublishDropped, mqtt.OnPacketIDExhausted:
		return true
	case mqtt.OnPublished:
		return h.cfg.Journal != nil // mochi copies the packet for every call: only when needed
	}
	return false
}

// Init is part of mochi's hook interface; the hook is configured by New.
func (h *Hook) Init(any) error { return nil }

// Stop cancels the timers and background revalidations.
func (h *Hook) Stop() error {
	h.cancel()
	h.stopWills()
	h.sessions.Range(func(_, v any) bool {
		v.(*session).stopTimers()
		return true
	})
	h.wg.Wait()
	return nil
}

// Policy returns the policy in force.
func (h *Hook) Policy() *authz.Policy { return h.policy.Load() }

// ActiveSessions counts the sessions the hook tracks, connected or not.
func (h *Hook) ActiveSessions() int {
	n := 0
	h.sessions.Range(func(k, _ any) bool {
		if !k.(*mqtt.Client).Closed() {
			n++
		}
		return true
	})
	return n
}

// Denial is one decision that refused something, as the audit log records it.
type Denial struct {
	Time     time.Time
	Action   string // "connect", or the authz action: publish, subscribe, receive
	Topic    string // empty for a refused CONNECT
	ThingID  string // empty when no token established one
	ClientID string
	Remote   string
	Reason   string
	Rule     string // the deciding rule as FILE:LINE (name), or why none decided; empty for a refused CONNECT
}

// Connection is what the hook knows about one connected client. It holds no token.
type Connection struct {
	Subject  authz.Subject // thing id, client id, scopes and claims of the token
	Remote   string
	Method   string    // "jwt", "introspection" or "anonymous"
	Expiry   time.Time // zero: never
	Protocol byte
	Skipped  []authz.Skip // rules the grants could not apply as written
}

// Connected lists the clients connected now.
func (h *Hook) Connected() []Connection {
	var out []Connection
	h.sessions.Range(func(k, v any) bool {
		cl, s := k.(*mqtt.Client), v.(*session)
		if cl.Closed() {
			return true
		}
		id := s.id.Load()
		out = append(out, Connection{
			Subject:  id.subject,
			Remote:   clientRemote(cl),
			Method:   id.method,
			Expiry:   id.expiry,
			Protocol: cl.Properties.ProtocolVersion,
			Skipped:  s.grants.Load().Skipped(),
		})
		return true
	})
	return out
}

// session returns the hook's state for a client, or nil.
func (h *Hook) session(cl *mqtt.Client) *session {
	v, ok := h.sessions.Load(cl)
	if !ok {
		return nil
	}
	return v.(*session)
}

// ConnackAmender is implemented by connections that can add the Authentication
// Method to the success CONNACK mochi writes (the broker's listeners wrap every
// connection so). MQTT 5 requires it for clients that authenticated with a method.
type ConnackAmender interface {
	AmendConnack(method string)
}

// ConnEnder is implemented by connections that say when mochi has finished with
// them (the broker's listeners wrap every connection so).
type ConnEnder interface {
	Ended() <-chan struct{}
}

// usernameIs reports whether the client's CONNECT username equals s.
func usernameIs(cl *mqtt.Client, s string) bool {
	return string(cl.Properties.Username) == s
}
