package amdev

import (
	"fmt"
	"time"

	"gopkg.in/yaml.v3"
)

// Settings is amdev's AM configuration: realms, users, clients, trees, keys and
// lifetimes. DefaultSettings follows the "Evaluate IoT" walk-through; a YAML
// file (LoadSettings) overrides any part of it. Field names in YAML are the
// yaml tags below, which follow AM's own setting names where AM has one.
type Settings struct {
	// CookieName is the SSO cookie (and header) name AM reports in server info.
	CookieName string `yaml:"cookieName"`
	// Realms lists the realms besides the root realm, as full paths ("/a", "/a/b").
	Realms []string `yaml:"realms"`
	// RealmAliases maps an alias (no leading slash) to a realm path.
	RealmAliases map[string]string `yaml:"realmAliases"`
	// RealmHosts maps DNS alias host names (lower case, no port) to realm paths: a
	// request to such a host without a realm parameter is in that realm, as with
	// AM's DNS aliases (e.g. sub.am.localtest.me -> /a/b).
	RealmHosts map[string]string `yaml:"realmHosts"`
	// TrustedProxies are the addresses or CIDR prefixes of reverse proxies in
	// front of amdev. A request from one of them is also taken as addressed to
	// the URL its X-Forwarded-Proto and X-Forwarded-Host name (the audience of
	// client assertions and signed requests). Empty, the default, trusts none:
	// a forwarding header from anyone else is ignored.
	TrustedProxies []string `yaml:"trustedProxies"`
	// Admin is the administrator that zero-page login accepts (root realm only).
	Admin Admin `yaml:"admin"`
	// Users are human identities seeded into the store when absent (device-grant approvers).
	Users Named[User] `yaml:"users"`
	// Things are thing identities seeded into the store when absent.
	Things Named[Thing] `yaml:"things"`
	// IoT is the IoT Service of every realm.
	IoT IoTService `yaml:"iotService"`
	// OAuth2 is the OAuth2 Provider service of every realm.
	OAuth2 OAuth2Provider `yaml:"oauth2"`
	// Clients are the OAuth 2.0 clients by client id.
	Clients Named[Client] `yaml:"clients"`
	// SoftwarePublishers are the software publisher agents by agent id.
	SoftwarePublishers Named[SoftwarePublisher] `yaml:"softwarePublishers"`
	// CertificateAuthorities are PEM files whose keys verify registration
	// certificates (AM's am.services.iot.cert.verification secret). The value
	// "builtin:es256test" names the embedded walk-through certificate. Relative
	// paths are relative to the config file.
	CertificateAuthorities []string `yaml:"certificateAuthorities"`
	// Trees are the authentication trees by name.
	Trees Named[Tree] `yaml:"trees"`
	// DefaultTree serves /json/authenticate requests that name no tree.
	DefaultTree string `yaml:"defaultTree"`
	// AuthIDLifetime bounds one tree round: authIds and challenges expire after it.
	AuthIDLifetime Duration `yaml:"authIdLifetime"`
	// MaxPendingAuth bounds the authIds of tree flows in progress; beyond it
	// the oldest is evicted (its flow must start again), never a new one refused.
	MaxPendingAuth int `yaml:"maxPendingAuth"`
	// MaxPendingAuthPerSource is one source address's share of MaxPendingAuth:
	// beyond it that source's own oldest authId is evicted.
	MaxPendingAuthPerSource int `yaml:"maxPendingAuthPerSource"`
	// SessionLifetime is the maximum lifetime of an SSO session.
	SessionLifetime Duration `yaml:"sessionLifetime"`
	// ClockSkew is the tolerance applied to exp/iat of thing-made JWTs.
	ClockSkew Duration `yaml:"clockSkew"`
	// LoginThrottle limits password and device user-code guesses.
	LoginThrottle LoginThrottle `yaml:"loginThrottle"`
	// AssertionMaxLifetime bounds a client assertion (client_assertion
	// callback, jwt-bearer grant): its exp may be at most this far ahead and
	// this long after its iat. Assertions carry no challenge, so only their
	// lifetime and the replay cache keep a captured one from working again.
	AssertionMaxLifetime Duration `yaml:"assertionMaxLifetime"`
	// SSFReceivers are the receivers of the Security Event Tokens amdev transmits (docs/revocation.md).
	SSFReceivers []SSFReceiver `yaml:"ssfReceivers"`
}

// LoginThrottle limits guesses: AccountFailures failed password logins of
// one account (or user-code entries of one signed-in user), or
// SourceFailures of any accounts from one address, within Duration lock that
// account or address for Duration. A locked account answers 401 "Your account
// has been locked." (AM's memory lockout), a locked address 429; both carry
// Retry-After, and neither looks at the guess.
type LoginThrottle struct {
	AccountFailures int      `yaml:"accountFailures"`
	SourceFailures  int      `yaml:"sourceFailures"`
	Duration        Duration `yaml:"duration"`
}

// Admin is the administrator account.
type Admin struct {
	Username string `yaml:"username"`
	Password string `yaml:"password"`
}

// User is a human identity.
type User struct {
	Realm    string `yaml:"realm"`
	Password string `yaml:"password"`
}

// Thing is a thing identity to seed.
type Thing struct {
	Realm                 string `yaml:"realm"`
	ThingType             string `yaml:"thingType"`
	ThingKeys             string `yaml:"thingKeys"` // JWKS as JSON text
	ThingConfig           string `yaml:"thingConfig"`
	ThingProperties       string `yaml:"thingProperties"`
	ThingOAuth2ClientName string `yaml:"thingOAuth2ClientName"`
	Password              string `yaml:"password"`
}

// IoTService is AM's IoT Service (§10.4 of the protocol notes).
type IoTService struct {
	OAuthClientName       string   `yaml:"oauthClientName"`
	OAuthSubjectAttribute string   `yaml:"oauthSubjectAttribute"`
	AttributeAllowlist    []string `yaml:"attributeAllowlist"`
	// RestrictedThingTypes are the thingType values a dynamic registration
	// may set only when a trust anchor vouches for it (PoP & certificate, a
	// software statement); a registration without trust (POP_WITHOUT_TRUST)
	// that claims one fails. The administrator (identity REST, seeded
	// things) and a node's defaultAttributeValues may set any. Default
	// [gateway]: the default policy grants gateways other things' topics.
	RestrictedThingTypes []string `yaml:"restrictedThingTypes"`
	// BindThingTokens binds every access token a thing of the realm obtains to the key it registered
	// ("key": cnf.jwk, RFC 7800) or, for a thing that registered with a certificate, to that certificate
	// ("certificate": cnf.x5t#S256, RFC 8705), so that a copied token is useless without the key or the
	// certificate; "" binds only when the request asks with cnf_key.
	BindThingTokens string `yaml:"bindThingTokens"`
}

// OAuth2Provider holds the provider settings.
type OAuth2Provider struct {
	AccessTokenLifetime  Duration `yaml:"accessTokenLifetime"`
	RefreshTokenLifetime Duration `yaml:"refreshTokenLifetime"`
	DeviceCodeLifetime   Duration `yaml:"deviceCodeLifetime"`
	DevicePollInterval   Duration `yaml:"devicePollInterval"`
	// TokenFormat is "jwt" (client-based tokens) or "opaque" (server-side,
	// CTS-based tokens).
	TokenFormat string `yaml:"tokenFormat"`
	// SigningAlgorithm signs client-based tokens: ES256 (the default), RS256
	// (a key published in the JWKS) or HS256 (a secret amdev keeps: a
	// resource server must introspect these tokens), as AM's
	// advancedOAuth2Config.tokenSigningAlgorithm.
	SigningAlgorithm string `yaml:"tokenSigningAlgorithm"`
	// TokenEncryption encrypts client-based tokens instead of signing them,
	// as AM's advancedOAuth2Config.tokenEncryptionEnabled: a JWE (dir,
	// A128CBC-HS256) only amdev can read, so resource servers introspect it.
	TokenEncryption bool `yaml:"tokenEncryptionEnabled"`
	// CompoundSubject makes sub "(usr!id)" with subname id; false makes sub the plain id.
	CompoundSubject bool `yaml:"compoundSubject"`
	// IssueRefreshTokens adds refresh tokens to thing and device-grant token responses.
	IssueRefreshTokens bool `yaml:"issueRefreshTokens"`
	// ClaimsFromAttributes maps a token claim to the thing attribute it is
	// copied from, standing in for an AM access-token modification script
	// (default thingType: thingType). One value gives a string claim, several an array.
	ClaimsFromAttributes map[string]string `yaml:"claimsFromAttributes"`
}

// Client is an OAuth 2.0 client.
type Client struct {
	Secret        string   `yaml:"secret"`
	Scopes        []string `yaml:"scopes"`
	DefaultScopes []string `yaml:"defaultScopes"`
	GrantTypes    []string `yaml:"grantTypes"`
	// IntrospectAllTokens lets the client introspect tokens issued to other
	// clients (AM's am-introspect-all-tokens scope).
	IntrospectAllTokens bool `yaml:"introspectAllTokens"`
	// Inactive refuses the client's authentication (AM's status Inactive).
	Inactive bool `yaml:"inactive"`
	// AccessTokenLifetime, when set, replaces the provider's for the
	// client's access tokens (AM's per-client accessTokenLifetime; 0 inherits).
	AccessTokenLifetime Duration `yaml:"accessTokenLifetime"`
}

// SoftwarePublisher is a software publisher agent.
type SoftwarePublisher struct {
	Issuer string `yaml:"issuer"`
	JWKS   string `yaml:"jwks"` // JSON text
}

// Tree is an authentication tree. Its shape is fixed by which nodes it has:
// Authenticate Thing alone (register outcome → Failure), Register Thing alone,
// Authenticate Thing whose register outcome leads to Register Thing, or a
// username/password tree (Username → Password → Data Store Decision).
type Tree struct {
	Authenticate     *AuthenticateNode `yaml:"authenticate"`
	Register         *RegisterNode     `yaml:"register"`
	UsernamePassword bool              `yaml:"usernamePassword"`
}

// Authentication methods of the Authenticate Thing node.
const (
	MethodProofOfPossession = "PROOF_OF_POSSESSION"
	MethodClientAssertion   = "CLIENT_ASSERTION"
)

// Registration methods of the Register Thing node.
const (
	MethodPoPWithCertificate       = "POP_WITH_CERTIFICATE"
	MethodPoPWithSoftwareStatement = "POP_WITH_SOFTWARE_STATEMENT"
	MethodPoPWithoutTrust          = "POP_WITHOUT_TRUST"
	MethodSoftwareStatementOnly    = "SOFTWARE_STATEMENT_WITHOUT_POP"
)

// AuthenticateNode is the Authenticate Thing node.
type AuthenticateNode struct {
	Method                   string   `yaml:"jwtAuthenticationMethod"`
	IssueRestrictedToken     bool     `yaml:"issueRestrictedToken"`
	AdditionalAudienceValues []string `yaml:"additionalAudienceValues"`
	// RequiredClaims stands in for a scripted decision node after Authenticate:
	// every listed claim of the verified JWT must equal the given string.
	RequiredClaims map[string]string `yaml:"requiredClaims"`
}

// RegisterNode is the Register Thing node.
type RegisterNode struct {
	Method                  string            `yaml:"jwtRegistrationMethod"`
	CreateIdentity          bool              `yaml:"createIdentity"`
	AllowKeyRotation        bool              `yaml:"allowKeyRotation"`
	AllowAttributeOverwrite bool              `yaml:"allowAttributeOverwrite"`
	ClaimToAttributeMapping map[string]string `yaml:"claimToAttributeMapping"`
	DefaultAttributeValues  map[string]string `yaml:"defaultAttributeValues"`
	VerifySubject           bool              `yaml:"verifySubject"`
	// NameValidationRegex is AM's setting: a requested id it matches is refused.
	NameValidationRegex string `yaml:"nameValidationRegex"`
	// NamePattern (amdev's own) is a regular expression the whole requested id
	// must match. The trees without a trust anchor (POP_WITHOUT_TRUST) have
	// defaultNamePattern. Whatever the pattern, no registration takes the
	// name of an OAuth2 client, of the administrator or of a user.
	NamePattern string `yaml:"namePattern"`
}

// Duration is a time.Duration written in YAML as "90s", "5m", "1h".
type Duration time.Duration

// UnmarshalYAML parses a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil || v < 0 {
		return fmt.Errorf("line %d: invalid duration %q (want e.g. 90s, 5m, 1h)", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration as a Go duration string.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// Named is a map of named settings. In a config file an entry whose name
// exists already is decoded on top of it, so a file can change one field of a
// default client or tree without repeating the rest.
type Named[T any] map[string]*T

// UnmarshalYAML merges the mapping into the existing entries.
func (m *Named[T]) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: expected a mapping of names", n.Line)
	}
	if *m == nil {
		*m = Named[T]{}
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		name, body := n.Content[i].Value, n.Content[i+1]
		if body.Kind == yaml.ScalarNode && body.Tag == "!!null" {
			delete(*m, name) // "name: null" removes a default entry
			continue
		}
		var v T
		if old := (*m)[name]; old != nil {
			v = *old
		}
		if err := checkKnownFields(body, v); err != nil {
			return err
		}
		if err := body.Decode(&v); err != nil {
			return err
		}
		(*m)[name] = &v
	}
	return nil
}
