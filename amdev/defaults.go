package amdev

import (
	_ "embed"
	"slices"
	"time"
)

// Public test material of the walk-through (see testdata/README.md).
var (
	//go:embed testdata/es256test-ca.cert.pem
	es256testCAPEM []byte
	//go:embed testdata/software-publisher-public.jwks
	softwarePublisherJWKS string
)

// Names of the built-in demo identities and clients.
const (
	// DefaultClientID is the IoT Service's default OAuth client.
	DefaultClientID = "forgerock-iot-oauth2-client"
	// CustomThingClientID is the sample custom client a thing selects with thingOAuth2ClientName.
	CustomThingClientID = "thing-oauth2-client"
	// CloudAppClientID is the demo cloud application (client_credentials).
	CloudAppClientID = "cloud-app"
	// BrokerClientID is the broker's introspection client; it may introspect every token.
	BrokerClientID = "imb-broker"
	// DemoThingID is a seeded thing identity for demos (no keys: tokens for it are minted in-process).
	DemoThingID = "demo-thermostat"
	// DemoUserID is the human user that approves device-grant requests.
	DemoUserID = "bjensen"
	// defaultNamePattern is the name rule of the default trees without a trust
	// anchor: a letter or digit, then up to 63 letters, digits, '.', '_' or
	// '-' — nothing an MQTT topic level, a compound subject "(usr!x)" or a
	// URL path treats specially.
	defaultNamePattern = `[A-Za-z0-9][A-Za-z0-9._-]{0,63}`
	// builtinES256Test names the embedded es256test CA in CertificateAuthorities.
	builtinES256Test = "builtin:es256test"
)

// Development secrets of the defaults. They are documented, public values:
// override them in the config file for anything shared.
const (
	DefaultAdminPassword     = "changeit"
	DefaultUserPassword      = "Ch4ng31t"
	DefaultClientSecret      = "forgerock-iot-dev-secret"
	CustomThingClientSecret  = "thing-oauth2-dev-secret"
	CloudAppClientSecret     = "cloud-app-dev-secret"
	BrokerClientSecret       = "imb-broker-dev-secret"
	grantJWTBearer           = "urn:ietf:params:oauth:grant-type:jwt-bearer"
	grantDeviceCode          = "urn:ietf:params:oauth:grant-type:device_code"
	grantRefreshToken        = "refresh_token"
	grantClientCredentials   = "client_credentials"
	scopeIntrospectAllTokens = "am-introspect-all-tokens"
)

// DefaultSettings returns the walk-through's AM configuration plus the demo
// clients and the extra named trees (a fresh value on every call).
func DefaultSettings() Settings {
	return Settings{
		CookieName:   "iPlanetDirectoryPro",
		Realms:       nil,
		RealmAliases: map[string]string{},
		Admin:        Admin{Username: "amAdmin", Password: DefaultAdminPassword},
		Users:        Named[User]{DemoUserID: {Realm: "/", Password: DefaultUserPassword}},
		Things:       Named[Thing]{DemoThingID: {Realm: "/", ThingType: "device"}},
		IoT: IoTService{
			OAuthClientName:      DefaultClientID,
			AttributeAllowlist:   []string{"thingConfig", "thingType", "thingProperties", "thingKeys"},
			RestrictedThingTypes: []string{"gateway"},
		},
		OAuth2: OAuth2Provider{
			AccessTokenLifetime:  Duration(time.Hour),
			RefreshTokenLifetime: Duration(7 * 24 * time.Hour),
			DeviceCodeLifetime:   Duration(5 * time.Minute),
			DevicePollInterval:   Duration(5 * time.Second),
			TokenFormat:          "jwt",
			SigningAlgorithm:     "ES256",
			CompoundSubject:      true,
			IssueRefreshTokens:   true,
			ClaimsFromAttributes: map[string]string{"thingType": "thingType"},
		},
		Clients: Named[Client]{
			DefaultClientID: {
				Secret:        DefaultClientSecret,
				Scopes:        []string{"publish", "subscribe"},
				DefaultScopes: []string{"subscribe"},
				GrantTypes:    []string{grantJWTBearer, grantDeviceCode, grantRefreshToken},
			},
			CustomThingClientID: {
				Secret:     CustomThingClientSecret,
				Scopes:     []string{"create", "modify", "delete"},
				GrantTypes: []string{grantJWTBearer},
			},
			CloudAppClientID: {
				Secret:        CloudAppClientSecret,
				Scopes:        []string{"fleet:read", "fleet:command"},
				DefaultScopes: []string{"fleet:read"},
				GrantTypes:    []string{grantClientCredentials},
			},
			BrokerClientID: {
				Secret:              BrokerClientSecret,
				Scopes:              []string{scopeIntrospectAllTokens},
				GrantTypes:          []string{grantClientCredentials},
				IntrospectAllTokens: true,
			},
		},
		SoftwarePublishers: Named[SoftwarePublisher]{
			"iot-software-publisher": {Issuer: "https://soft-pub.example.com", JWKS: softwarePublisherJWKS},
		},
		CertificateAuthorities:  []string{builtinES256Test},
		Trees:                   defaultTrees(),
		DefaultTree:             "ldapService",
		AuthIDLifetime:          Duration(5 * time.Minute),
		MaxPendingAuth:          100_000,
		MaxPendingAuthPerSource: 1_000,
		SessionLifetime:         Duration(2 * time.Hour),
		ClockSkew:               Duration(time.Minute),
		AssertionMaxLifetime:    Duration(5 * time.Minute),
		LoginThrottle:           LoginThrottle{AccountFailures: 5, SourceFailures: 20, Duration: Duration(time.Minute)},
	}
}

func defaultTrees() Named[Tree] {
	pop := func(restricted bool, aud ...string) *AuthenticateNode {
		return &AuthenticateNode{Method: MethodProofOfPossession, IssueRestrictedToken: restricted, AdditionalAudienceValues: aud}
	}
	assertion := func(aud ...string) *AuthenticateNode {
		return &AuthenticateNode{Method: MethodClientAssertion, AdditionalAudienceValues: aud}
	}
	reg := func(method string) *RegisterNode {
		r := &RegisterNode{Method: method, CreateIdentity: true}
		if method == MethodPoPWithoutTrust {
			r.NamePattern = defaultNamePattern
		}
		return r
	}
	swOnly := func() *RegisterNode {
		r := reg(MethodSoftwareStatementOnly)
		r.DefaultAttributeValues = map[string]string{"thingType": "device"}
		return r
	}
	mapped := func(method string) *RegisterNode {
		r := reg(method)
		r.ClaimToAttributeMapping = map[string]string{"thingProperties": "thingProperties"}
		return r
	}
	customClaims := func(n *AuthenticateNode) *AuthenticateNode {
		n.RequiredClaims = map[string]string{"life_universe_everything": "42"}
		return n
	}
	return Named[Tree]{
		// The walk-through's trees, with its first settings.
		"auth-tree":     {Authenticate: pop(true)},
		"reg-tree":      {Register: reg(MethodPoPWithCertificate)},
		"auth-reg-tree": {Authenticate: pop(true), Register: reg(MethodPoPWithCertificate)},
		// The walk-through's later settings, as extra names.
		"auth-tree-client-assertion": {Authenticate: assertion()},
		"auth-reg-tree-pop-sw-stmt":  {Authenticate: pop(true), Register: reg(MethodPoPWithSoftwareStatement)},
		"auth-reg-tree-pop":          {Authenticate: pop(true), Register: reg(MethodPoPWithoutTrust)},
		"reg-tree-pop-cert":          {Register: reg(MethodPoPWithCertificate)},
		"reg-tree-pop-sw-stmt":       {Register: reg(MethodPoPWithSoftwareStatement)},
		"reg-tree-pop":               {Register: reg(MethodPoPWithoutTrust)},
		"reg-tree-sw-stmt":           {Register: swOnly()},
		// Users.
		"ldapService": {UsernamePassword: true},
		"user-tree":   {UsernamePassword: true},
		// The reference functional test-suite's trees.
		"JWTAuthWithPoP":                                              {Authenticate: pop(true, "custom-pop-audience")},
		"JWTAuthWithPoPWithUnrestrictedToken":                         {Authenticate: pop(false)},
		"JWTAuthWithPoPAndCustomClaims":                               {Authenticate: customClaims(pop(true))},
		"JWTAuthWithAssertion":                                        {Authenticate: assertion("custom-client-assertion-audience")},
		"JWTAuthWithAssertionAndCustomClaims":                         {Authenticate: customClaims(assertion())},
		"JWTRegWithPoPWithCertAndJWTAuthWithPoP":                      {Authenticate: pop(true), Register: mapped(MethodPoPWithCertificate)},
		"JWTRegWithPoPWithCertAndJWTAuthWithPoPWithUnrestrictedToken": {Authenticate: pop(false), Register: mapped(MethodPoPWithCertificate)},
		"JWTRegWithPoPWithCertAndJWTAuthWithAssertion":                {Authenticate: assertion("custom-client-assertion-audience"), Register: mapped(MethodPoPWithCertificate)},
		"JWTRegWithPoPWithCert":                                       {Register: mapped(MethodPoPWithCertificate)},
		"JWTRegWithPoP":                                               {Register: reg(MethodPoPWithoutTrust)},
		"JWTRegWithPoPWithSoftState":                                  {Register: reg(MethodPoPWithSoftwareStatement)},
		"JWTRegWithSoftState":                                         {Register: swOnly()},
		"AnvilUserPwd":                                                {UsernamePassword: true},
	}
}

// DocumentedSecrets names the accounts of s whose password or client secret
// is still one of the documented development defaults above ("admin amAdmin",
// "user bjensen", "client cloud-app", …), sorted. Anyone who has read the
// docs can log in as them, so such settings are for this machine only.
func (s *Settings) DocumentedSecrets() []string {
	documented := []string{DefaultAdminPassword, DefaultUserPassword, DefaultClientSecret, CustomThingClientSecret,
		CloudAppClientSecret, BrokerClientSecret}
	var out []string
	if slices.Contains(documented, s.Admin.Password) {
		out = append(out, "admin "+s.Admin.Username)
	}
	for id, u := range s.Users {
		if slices.Contains(documented, u.Password) {
			out = append(out, "user "+id)
		}
	}
	for id, t := range s.Things {
		if t.Password != "" && slices.Contains(documented, t.Password) {
			out = append(out, "thing "+id)
		}
	}
	for id, c := range s.Clients {
		if slices.Contains(documented, c.Secret) {
			out = append(out, "client "+id)
		}
	}
	slices.Sort(out)
	return out
}
