package broker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"

	"imb/authz"
	"imb/hooks"
	"imb/introspect"
)

// Config is everything a broker needs. cmd/imb fills it from imb.yaml and flags; the
// yaml keys are the documented configuration file keys.
type Config struct {
	// Listeners. An empty address disables a listener.
	MQTTAddr  string   `yaml:"mqtt_addr"`  // plain MQTT over TCP (default 127.0.0.1:1883)
	TLSAddr   string   `yaml:"tls_addr"`   // MQTT over TLS
	WSAddr    string   `yaml:"ws_addr"`    // MQTT over WebSocket
	WSSAddr   string   `yaml:"wss_addr"`   // MQTT over WebSocket with TLS
	WSOrigins []string `yaml:"ws_origins"` // browser Origins allowed on WebSocket (empty: any)
	AdminAddr string   `yaml:"admin_addr"` // /healthz, /readyz, /metrics (default 127.0.0.1:9100)
	HTTPAddr  string   `yaml:"http_addr"`  // the HTTP door: publish and subscribe with a bearer token (docs/http.md)
	HTTPSAddr string   `yaml:"https_addr"` // the HTTP door over TLS

	TLSCert     string `yaml:"tls_cert"`      // PEM certificate chain for tls_addr, wss_addr and https_addr
	TLSKey      string `yaml:"tls_key"`       // PEM private key
	TLSClientCA string `yaml:"tls_client_ca"` // PEM CA bundle: when set, client certificates are required

	// Policy.
	PolicyFile string        `yaml:"policy"` // topics.yaml (default ./topics.yaml)
	Policy     *authz.Policy `yaml:"-"`      // overrides PolicyFile (tests)

	// Token validation: local JWT validation when Issuer, JWKSURL or JWKSFile is set;
	// RFC 7662 introspection when IntrospectURL is set (or discovered from Issuer with
	// client credentials and no JWT key source); both: JWTs of Issuer locally, the rest
	// introspected.
	Issuer               string        `yaml:"issuer"`       // OIDC issuer URL; discovery at {issuer}/.well-known/openid-configuration
	JWKSURL              string        `yaml:"jwks_url"`     // key set URL, instead of discovery
	JWKSFile             string        `yaml:"jwks_file"`    // local key set file
	Audience             []string      `yaml:"audience"`     // accepted aud values (empty: aud not checked)
	AudienceAny          bool          `yaml:"audience_any"` // imb serve: accept an issuer's tokens of any audience (else an issuer needs audience)
	Algorithms           []string      `yaml:"algorithms"`   // JWT algorithm allow-list (default ES256 ES384 RS256 PS256 EdDSA)
	TokenTypes           []string      `yaml:"token_types"`  // accepted JWT typ headers (empty: any)
	PoPAudience          string        `yaml:"pop_audience"` // this broker as IMB-POP proofs name it in aud (default: any aud of the proof's token)
	IntrospectURL        string        `yaml:"introspect_url"`
	ClientID             string        `yaml:"client_id"`          // the broker's own OAuth2 client, for introspection
	ClientSecret         string        `yaml:"client_secret"`      // its secret (prefer the IMB_CLIENT_SECRET environment variable)
	ClientSecretFile     string        `yaml:"client_secret_file"` // a file holding the secret (e.g. a systemd credential); trailing newline ignored
	IntrospectAuthMethod string        `yaml:"introspect_auth_method"`
	IntrospectMaxConns   int           `yaml:"introspect_max_conns"` // connections to the introspection endpoint (default 256)
	RevalidateInterval   time.Duration `yaml:"revalidate_interval"`  // revocation re-check of introspected tokens (default 60s; negative: never)
	ValidateTimeout      time.Duration `yaml:"validate_timeout"`     // one validation at CONNECT/AUTH (default 5s)
	CacheSize            int           `yaml:"cache_size"`           // validated tokens kept (default 100000; negative: no cache)
	CacheMaxTTL          time.Duration `yaml:"cache_max_ttl"`        // longest a validation is reused (default 5m; never past exp)
	NegativeTTL          time.Duration `yaml:"negative_ttl"`         // how long a rejected token stays rejected (default 10s)

	// Key set maintenance of local JWT validation.
	JWKSRefreshInterval       time.Duration `yaml:"jwks_refresh_interval"`         // default 5m: a removed key is dropped then
	JWKSUnknownKidMinInterval time.Duration `yaml:"jwks_unknown_kid_min_interval"` // default 5s between fetches an unknown kid forces

	// Introspect is the introspection mode: always, opaque-only, never, or auto (also ""); see plan.
	Introspect string `yaml:"introspect"`
	// Credentials of the introspection client beyond client_id/client_secret, by introspect_auth_method.
	IntrospectClientKey       string `yaml:"introspect_client_key"`        // private_key_jwt: PEM private key file
	IntrospectClientKeyID     string `yaml:"introspect_client_key_id"`     // private_key_jwt: kid of that key
	IntrospectClientCert      string `yaml:"introspect_client_cert"`       // tls_client_auth: PEM certificate chain file
	IntrospectClientCertKey   string `yaml:"introspect_client_cert_key"`   // tls_client_auth: PEM key file of the certificate
	IntrospectBearerTokenFile string `yaml:"introspect_bearer_token_file"` // bearer: file holding the token

	// Claims map: where the token's scopes and thing id are found (claim paths with dots, e.g. realm_access.roles).
	ScopeClaims  []string `yaml:"scope_claims"`   // claims holding scopes or roles (default scope and scp)
	ThingIDClaim string   `yaml:"thing_id_claim"` // claim naming the thing (default subname, else sub)

	// Identity binding and sessions.
	ClientIDBinding  []string      `yaml:"client_id_binding"` // default ["{sub}"]
	RequireUsername  bool          `yaml:"require_username"`  // username must equal the thing id
	TokenField       string        `yaml:"token_field"`       // CONNECT field with the token: password (default), username or either
	WillDenied       string        `yaml:"will_denied"`       // "reject" (default) or "drop"
	DataDir          string        `yaml:"data"`              // persistence directory; empty: in memory
	DataFsync        bool          `yaml:"data_fsync"`        // fsync every write (survives power loss, costs a flush per QoS>0 message)
	MaxSessionExpiry time.Duration `yaml:"max_session_expiry"`
	MessageExpiry    time.Duration `yaml:"message_expiry"` // cap on message and retained lifetime (default 0: kept until replaced)

	// Limits.
	ConnectDeadline time.Duration `yaml:"connect_deadline"` // time to send CONNECT after the TCP/TLS accept (default 10s)
	MaxPacketSize   uint32        `yaml:"max_packet_size"`  // bytes (default 262144)
	WritesPending   int32         `yaml:"writes_pending"`   // queued outbound packets per client before drops (default 256)
	MaxInflight     uint16        `yaml:"max_inflight"`     // QoS>0 messages in flight per client (default 1024)
	DeliveryWait    time.Duration `yaml:"delivery_wait"`    // how long a publisher is held for a subscriber's full queue before the delivery is dropped (default 5s; negative: not held)
	MaxClients      int64         `yaml:"max_clients"`      // 0: no limit
	// Bounds on what one client or one source address may cost the broker before
	// and after authentication (see docs/configuration.md, "Limits"). Zero: the
	// default; negative: no limit.
	MaxSubscriptions          int `yaml:"max_subscriptions"`             // per client (default 1000); beyond: SUBACK 0x97 (3.1.1: 0x80)
	MaxPendingConnects        int `yaml:"max_pending_connects"`          // sockets accepted and not yet answered with CONNACK, all listeners (default 4096)
	MaxPendingConnectsPerAddr int `yaml:"max_pending_connects_per_addr"` // the same, per source IP address (default 256)
	// Introspection requests caused by CONNECTs with unknown tokens; beyond: CONNACK 0x9F (3.1.1: 0x03).
	MaxUpstreamValidations int           `yaml:"max_upstream_validations"` // in flight, all sources (default 256; 0: introspect_max_conns)
	UpstreamValidationRate float64       `yaml:"upstream_validation_rate"` // per source IP address, per second, burst twice that (default 20)
	ConnectRatePerAddr     float64       `yaml:"connect_rate_per_addr"`    // every CONNECT per source IP address, per second, burst twice that; beyond: 0x9F (default 0: off)
	SysInterval            time.Duration `yaml:"sys_interval"`             // $SYS publishing interval (default 30s, at least 10s)

	// AdminToken guards the admin listener's status page (bearer token, or the
	// password of HTTP basic authentication). Without it the page is served only
	// on a loopback admin_addr.
	AdminToken string `yaml:"admin_token"`

	// AdminScope is the scope an access token of the identity provider must carry to call the administrator's
	// API (POST /admin/v1/revocations, GET /admin/v1/sessions); without it that API answers 403.
	AdminScope string `yaml:"admin_scope"`
	// AdminTLSCert and AdminTLSKey make the admin listener serve HTTPS (PEM files).
	AdminTLSCert string `yaml:"admin_tls_cert"`
	AdminTLSKey  string `yaml:"admin_tls_key"`
	// AdminClientCA is a PEM CA bundle: a client certificate it issued, presented to the HTTPS admin listener,
	// may call the administrator's API when one of its names is in AdminClientNames (the alternative to an access
	// token with admin_scope). Health probes and scrapers need no certificate.
	AdminClientCA string `yaml:"admin_client_ca"`
	// AdminClientNames are the certificate names (subject common name, DNS, URI or email subject alternative
	// names) allowed to call the administrator's API with a client certificate.
	AdminClientNames []string `yaml:"admin_client_names"`
	// RevocationRetention is how long a revocation (an event or an administrator's) is remembered to refuse the
	// tokens it names (default 24h; longer than the identity provider's access tokens live).
	RevocationRetention time.Duration `yaml:"revocation_retention"`
	// SSF is the Security Event Token receiver at POST /ssf/events of the admin listener (docs/revocation.md).
	SSF SSFConfig `yaml:"ssf"`

	// ServerKeepAlive, when set, replaces the keep-alive of MQTT 5 clients and is
	// sent to them in CONNACK (3.1.1 cannot be told one and keeps its own).
	ServerKeepAlive time.Duration `yaml:"server_keep_alive"`

	// Cluster makes this node one of several that behave as one broker (see
	// docs/cluster.md). Without NATS or Embed the broker is a single node.
	Cluster ClusterConfig `yaml:"cluster"`

	// Logger receives operational logs; Audit the audit trail (default: Logger).
	Logger *slog.Logger `yaml:"-"`
	Audit  *slog.Logger `yaml:"-"`
	// Validator replaces the validators built from the fields above (tests, load test).
	Validator hooks.TokenValidator `yaml:"-"`
	// jwt is the local JWT validator validator built, if any: SIGHUP reloads its keys.
	jwt *introspect.JWTValidator

	// AllowAll runs the bare mochi broker with an allow-all hook and the same
	// capabilities: the baseline the load test measures imb against. It refuses any
	// listener that is not on a loopback address. Never a deployment setting.
	AllowAll bool `yaml:"-"`
}

// ClusterConfig is the cluster: section of imb.yaml.
type ClusterConfig struct {
	NATS      []string      `yaml:"nats"`       // URLs of an existing NATS cluster with JetStream to join
	NATSCreds string        `yaml:"nats_creds"` // NATS credentials file for nats
	NATSCA    string        `yaml:"nats_ca"`    // PEM CA bundle that verifies the NATS servers (TLS)
	Embed     string        `yaml:"embed"`      // HOST:PORT: run a NATS node with JetStream in this process, its routes on this address
	Routes    []string      `yaml:"routes"`     // the other embedded nodes' route URLs, nats://HOST:PORT
	NodeName  string        `yaml:"node_name"`  // this node's name in the cluster, logs, metrics and the audit log (default: host name)
	Replicas  int           `yaml:"replicas"`   // copies of each stream (default 3 with three or more servers, else 1)
	LostGrace time.Duration `yaml:"lost_grace"` // how long connections stay after the engine is lost (default 5s)
}

// SSFConfig is the ssf: section of imb.yaml: the transmitter whose Security Event Tokens (RFC 8417, pushed as
// RFC 8935 says) the broker accepts. Without issuer the receiver is off.
type SSFConfig struct {
	Issuer   string        `yaml:"issuer"`    // the transmitter's iss
	JWKSURL  string        `yaml:"jwks_url"`  // its key set
	JWKSFile string        `yaml:"jwks_file"` // or a local copy of it
	Audience string        `yaml:"audience"`  // this broker, as the transmitter names it in aud
	MaxAge   time.Duration `yaml:"max_age"`   // oldest iat accepted (default 5m); jti are remembered as long
}

// Enabled reports whether the configuration turns the receiver on.
func (c SSFConfig) Enabled() bool {
	return c.Issuer != "" || c.JWKSURL != "" || c.JWKSFile != "" || c.Audience != ""
}

// check says what an enabled receiver lacks, naming the key (for file:line errors, the key of the section).
func (c SSFConfig) check() (key string, err error) {
	if !c.Enabled() {
		return "", nil
	}
	switch {
	case c.Issuer == "":
		return "issuer", errors.New("ssf: issuer is required: the iss of the transmitter's events")
	case c.Audience == "":
		return "audience", errors.New("ssf: audience is required: this broker as the transmitter names it in aud")
	case (c.JWKSURL == "") == (c.JWKSFile == ""):
		return "jwks_url", errors.New("ssf: give jwks_url or jwks_file (one): the transmitter's signing keys")
	case c.MaxAge < 0:
		return "max_age", fmt.Errorf("ssf: max_age %s: must be positive", c.MaxAge)
	}
	if c.JWKSURL != "" {
		if u, err := url.Parse(c.JWKSURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return "jwks_url", fmt.Errorf("ssf: jwks_url %q: want an absolute http or https URL", c.JWKSURL)
		}
	}
	return "", nil
}

// Enabled reports whether the configuration makes the broker a cluster node.
func (c ClusterConfig) Enabled() bool { return len(c.NATS) > 0 || c.Embed != "" }

// capabilities are mochi's settings for this configuration.
func (c *Config) capabilities() *mqtt.Capabilities {
	caps := mqtt.NewDefaultServerCapabilities()
	caps.TopicAliasMaximum = 0 // aliases would reach the ACL as an empty topic (mochi pitfall)
	caps.MaximumPacketSize = c.MaxPacketSize
	caps.MaximumClientWritesPending = c.WritesPending
	caps.MaximumSessionExpiryInterval = uint32(c.MaxSessionExpiry / time.Second)
	caps.MaximumMessageExpiryInterval = int64(c.MessageExpiry / time.Second)
	caps.MaximumInflight = c.MaxInflight
	// mochi copies a PUBLISH's properties (user properties included) into its
	// PUBACK/PUBREC; strict clients refuse acknowledgements carrying them.
	caps.Compatibilities.NoInheritedPropertiesOnAck = true
	if c.DeliveryWait > 0 { // negative: mochi's own behaviour, a full queue drops at once
		caps.DeliveryWait = c.DeliveryWait
	}
	if c.MaxClients > 0 {
		caps.MaximumClients = c.MaxClients
	}
	return caps
}

// checkLoopbackOnly refuses an allow-all broker reachable from another machine.
func (c *Config) checkLoopbackOnly() error {
	for _, a := range []string{c.MQTTAddr, c.TLSAddr, c.WSAddr, c.WSSAddr, c.HTTPAddr, c.HTTPSAddr, c.AdminAddr} {
		if a == "" {
			continue
		}
		host, _, err := net.SplitHostPort(a)
		ip := net.ParseIP(host)
		if err != nil || (host != "localhost" && (ip == nil || !ip.IsLoopback())) {
			return fmt.Errorf("allow-all baseline on %s: only loopback addresses are allowed", a)
		}
	}
	return nil
}

// Defaults returns a Config with every default filled in.
func Defaults() Config {
	return Config{
		MQTTAddr:                  "127.0.0.1:1883",
		AdminAddr:                 "127.0.0.1:9100",
		PolicyFile:                "topics.yaml",
		RevalidateInterval:        60 * time.Second,
		ValidateTimeout:           5 * time.Second,
		CacheSize:                 100_000,
		IntrospectMaxConns:        256,
		CacheMaxTTL:               5 * time.Minute,
		NegativeTTL:               10 * time.Second,
		ClientIDBinding:           []string{"{sub}"},
		WillDenied:                "reject",
		TokenField:                "password",
		MaxSessionExpiry:          7 * 24 * time.Hour,
		ConnectDeadline:           10 * time.Second,
		MaxPacketSize:             256 << 10,
		WritesPending:             256,
		MaxInflight:               1024,
		DeliveryWait:              5 * time.Second,
		SysInterval:               30 * time.Second,
		MaxSubscriptions:          hooks.DefaultMaxSubscriptions,
		MaxPendingConnects:        4096,
		MaxPendingConnectsPerAddr: 256,
		MaxUpstreamValidations:    256,
		UpstreamValidationRate:    introspect.DefaultSourceRate,
		Cluster:                   ClusterConfig{LostGrace: 5 * time.Second},
		RevocationRetention:       hooks.DefaultRevocationRetention,
		SSF:                       SSFConfig{MaxAge: 5 * time.Minute},
	}
}

// fill puts defaults into zero fields and checks what cannot work.
func (c *Config) fill() error {
	d := Defaults()
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Audit == nil {
		c.Audit = c.Logger.With("log", "audit")
	}
	if c.ValidateTimeout <= 0 {
		c.ValidateTimeout = d.ValidateTimeout
	}
	if c.IntrospectMaxConns <= 0 {
		// At 20 ms an introspection, 256 connections serve a storm of ~12,800 new
		// tokens a second; a handful would turn a fleet reconnect into 0x88s.
		c.IntrospectMaxConns = d.IntrospectMaxConns
	}
	if c.CacheSize == 0 {
		c.CacheSize = d.CacheSize
	}
	if c.CacheMaxTTL <= 0 {
		c.CacheMaxTTL = d.CacheMaxTTL
	}
	if c.NegativeTTL <= 0 {
		c.NegativeTTL = d.NegativeTTL
	}
	if c.ConnectDeadline <= 0 {
		c.ConnectDeadline = d.ConnectDeadline
	}
	if c.MaxPacketSize == 0 {
		c.MaxPacketSize = d.MaxPacketSize
	}
	if c.WritesPending <= 0 {
		c.WritesPending = d.WritesPending
	}
	if c.MaxInflight == 0 {
		c.MaxInflight = d.MaxInflight
	}
	if c.DeliveryWait == 0 {
		c.DeliveryWait = d.DeliveryWait
	}
	if c.MaxSessionExpiry <= 0 {
		c.MaxSessionExpiry = d.MaxSessionExpiry
	}
	if c.MaxUpstreamValidations == 0 {
		// As many as the connections to the endpoint: more would wait in the HTTP
		// client's queue, behind whoever floods it.
		c.MaxUpstreamValidations = c.IntrospectMaxConns
	}
	if c.UpstreamValidationRate == 0 {
		c.UpstreamValidationRate = introspect.DefaultSourceRate
	}
	if c.MaxSubscriptions == 0 {
		c.MaxSubscriptions = d.MaxSubscriptions
	}
	if c.MaxPendingConnects == 0 {
		c.MaxPendingConnects = d.MaxPendingConnects
	}
	if c.MaxPendingConnectsPerAddr == 0 {
		c.MaxPendingConnectsPerAddr = d.MaxPendingConnectsPerAddr
	}
	if c.SysInterval == 0 {
		c.SysInterval = d.SysInterval
	}
	if c.SysInterval < 10*time.Second {
		return fmt.Errorf("sys_interval %s: must be at least 10s ($SYS publishing reads memory statistics every tick)", c.SysInterval)
	}
	if c.ServerKeepAlive < 0 || c.ServerKeepAlive > 65535*time.Second || c.ServerKeepAlive%time.Second != 0 {
		return fmt.Errorf("server_keep_alive %s: want whole seconds between 0s and 65535s", c.ServerKeepAlive)
	}
	if c.Policy == nil && c.PolicyFile == "" {
		c.PolicyFile = d.PolicyFile
	}
	if err := c.Cluster.fill(); err != nil {
		return err
	}
	if _, err := c.SSF.check(); err != nil {
		return err
	}
	if c.SSF.MaxAge == 0 {
		c.SSF.MaxAge = d.SSF.MaxAge
	}
	if c.RevocationRetention <= 0 {
		c.RevocationRetention = d.RevocationRetention
	}
	if c.Cluster.Enabled() {
		// Every log and audit line of a cluster node names it, so that the lines of
		// several nodes can be read together.
		c.Logger, c.Audit = c.Logger.With("node", c.Cluster.NodeName), c.Audit.With("node", c.Cluster.NodeName)
	}
	switch {
	case (c.AdminTLSCert == "") != (c.AdminTLSKey == ""):
		return errors.New("admin_tls_cert and admin_tls_key go together")
	case c.AdminClientCA != "" && c.AdminTLSCert == "":
		return errors.New("admin_client_ca needs admin_tls_cert and admin_tls_key: client certificates come with HTTPS")
	case (c.AdminClientCA == "") != (len(c.AdminClientNames) == 0):
		return errors.New("admin_client_ca and admin_client_names go together: the CA vouches for a certificate, the names say which may call the administrator's API")
	}
	if c.needsTLS() && (c.TLSCert == "" || c.TLSKey == "") {
		return errors.New("tls_addr, wss_addr and https_addr need tls_cert and tls_key")
	}
	if !c.AllowAll && c.Validator == nil && c.Issuer == "" && c.JWKSURL == "" && c.JWKSFile == "" && c.IntrospectURL == "" {
		return errors.New("no token validation configured: set issuer, jwks_url, jwks_file or introspect_url")
	}
	for key, u := range map[string]string{"issuer": c.Issuer, "jwks_url": c.JWKSURL, "introspect_url": c.IntrospectURL} {
		if u == "" {
			continue
		}
		if pu, err := url.Parse(u); err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
			return fmt.Errorf("%s %q: want an absolute http or https URL", key, u)
		}
	}
	if c.ClientSecretFile != "" {
		b, err := os.ReadFile(c.ClientSecretFile)
		if err != nil {
			return fmt.Errorf("client_secret_file: %w", err)
		}
		c.ClientSecret = strings.TrimRight(string(b), "\r\n")
	}
	if (c.JWKSURL != "" || c.JWKSFile != "") && c.Issuer == "" {
		return errors.New("jwks_url and jwks_file need issuer: the iss claim is checked against it")
	}
	if c.IntrospectURL != "" && c.ClientID == "" && c.IntrospectAuthMethod != introspect.AuthBearer &&
		c.IntrospectAuthMethod != introspect.AuthNone {
		return errors.New("introspect_url needs client_id (and client_secret): the broker authenticates to the endpoint")
	}
	return nil
}

// CheckAudience refuses an issuer without an audience unless AudienceAny says so:
// an issuer signs tokens for every one of its clients, the broker's own
// introspection client among them, and without an audience check each of them
// would connect. The library leaves the choice to its caller; imb serve applies it.
func (c *Config) CheckAudience() error {
	if c.Issuer != "" && len(c.Audience) == 0 && !c.AudienceAny {
		return &ConfigError{Err: fmt.Errorf("issuer %s is set but no audience: every client of that issuer "+
			"(the broker's own introspection client too) could connect with its tokens; set audience "+
			"(--audience) to the clients whose tokens may connect, or audience_any: true (--audience-any) "+
			"to accept them all", c.Issuer)}
	}
	return nil
}

// needsTLS reports whether a TLS listener is configured.
func (c *Config) needsTLS() bool { return c.TLSAddr != "" || c.WSSAddr != "" || c.HTTPSAddr != "" }

// tlsConfig loads the server certificate and, when configured, the client CA.
func (c *Config) tlsConfig() (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("tls: load %s and %s: %w", c.TLSCert, c.TLSKey, err)
	}
	conf := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if c.TLSClientCA != "" {
		pem, err := os.ReadFile(c.TLSClientCA)
		if err != nil {
			return nil, fmt.Errorf("tls: client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls: client CA %s: no PEM certificate found", c.TLSClientCA)
		}
		conf.ClientCAs = pool
		conf.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return conf, nil
}

// adminTLSConfig is the admin listener's TLS configuration (nil: plain HTTP).
// Client certificates are asked for, verified when given and never required:
// probes and scrapers reach /healthz, /readyz and /metrics without one.
func (c *Config) adminTLSConfig() (*tls.Config, error) {
	if c.AdminTLSCert == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(c.AdminTLSCert, c.AdminTLSKey)
	if err != nil {
		return nil, fmt.Errorf("admin tls: load %s and %s: %w", c.AdminTLSCert, c.AdminTLSKey, err)
	}
	conf := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if c.AdminClientCA != "" {
		pem, err := os.ReadFile(c.AdminClientCA)
		if err != nil {
			return nil, fmt.Errorf("admin_client_ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("admin_client_ca %s: no PEM certificate found", c.AdminClientCA)
		}
		conf.ClientCAs, conf.ClientAuth = pool, tls.VerifyClientCertIfGiven
	}
	return conf, nil
}

// validator builds the token validator chain: JWT and/or introspection, behind the
// cache. The returned function reports readiness.
func (c *Config) validator(ctx context.Context) (hooks.TokenValidator, func(context.Context) error, error) {
	if c.Validator != nil {
		var ready func(context.Context) error
		if r, ok := c.Validator.(introspect.Readier); ok {
			ready = r.Ready
		}
		return c.Validator, ready, nil
	}
	plan, err := c.plan()
	if err != nil {
		return nil, nil, err
	}
	var jv *introspect.JWTValidator
	var iv *introspect.Introspector
	if plan.jwt {
		jv, err = introspect.NewJWT(ctx, introspect.JWTConfig{
			Issuer:     c.Issuer,
			JWKSURL:    c.JWKSURL,
			JWKSFile:   c.JWKSFile,
			Audience:   c.Audience,
			Algorithms: c.Algorithms,
			Types:      c.TokenTypes,
			Claims:     c.claimMap(),
			Logger:     c.Logger.With("component", "jwks"),

			RefreshInterval:    c.JWKSRefreshInterval,
			MinRefetchInterval: c.JWKSUnknownKidMinInterval,
		})
		c.jwt = jv
		if err != nil {
			return nil, nil, fmt.Errorf("jwt validation: %w", err)
		}
	}
	if plan.introspect {
		ic := introspect.IntrospectionConfig{
			Endpoint:     c.IntrospectURL,
			Issuer:       c.Issuer,
			CheckIssuer:  c.Issuer != "",
			ClientID:     c.ClientID,
			ClientSecret: c.ClientSecret,
			AuthMethod:   c.IntrospectAuthMethod,
			Audience:     c.Audience,
			Claims:       c.claimMap(),
			Timeout:      c.ValidateTimeout,
			MaxConns:     c.IntrospectMaxConns,
			Limits: introspect.UpstreamLimits{
				MaxInFlight:   c.MaxUpstreamValidations,
				PerSourceRate: c.UpstreamValidationRate,
			},
			Logger: c.Logger.With("component", "introspect"),
		}
		if err := c.introspectCredentials(&ic); err != nil {
			return nil, nil, err
		}
		iv, err = introspect.NewIntrospection(ctx, ic)
		if err != nil {
			return nil, nil, fmt.Errorf("introspection: %w", err)
		}
	}
	c.Logger.Info("token validation", "plan", plan.String())
	var v introspect.Validator
	switch {
	case jv != nil && iv != nil:
		v = introspect.NewAuto(jv, iv)
	case jv != nil:
		v = jv
	default:
		v = iv
	}
	ready := func(ctx context.Context) error {
		if r, ok := v.(introspect.Readier); ok {
			if err := r.Ready(ctx); err != nil {
				return err
			}
		}
		if iv != nil {
			return probe(ctx, iv.Endpoint())
		}
		return nil
	}
	if c.CacheSize < 0 {
		return uncached{v}, ready, nil
	}
	cache := introspect.NewCache(v, introspect.CacheConfig{
		Size:        c.CacheSize,
		MaxTTL:      c.CacheMaxTTL,
		NegativeTTL: c.NegativeTTL,
	})
	return cache, ready, nil
}

// claimMap is where the configuration says scopes and the thing id are found.
func (c *Config) claimMap() introspect.ClaimMap {
	return introspect.ClaimMap{Scopes: c.ScopeClaims, ThingID: c.ThingIDClaim}
}

// uncached adapts a bare validator to the hook: every validation goes upstream.
type uncached struct{ introspect.Validator }

func (u uncached) Revalidate(ctx context.Context, token string) (*introspect.Token, error) {
	return u.Validate(ctx, token)
}

// probe reports whether an HTTP endpoint answers at all: any status below 500 means
// it is reachable (an introspection endpoint answers a bare GET with 4xx).
func probe(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("introspection endpoint: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("introspection endpoint unreachable: %w", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode >= 500 {
		return fmt.Errorf("introspection endpoint answers %s", resp.Status)
	}
	return nil
}
