package amdev

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"gopkg.in/yaml.v3"
)

// Config configures a Server.
type Config struct {
	// Listen is the TCP address; "127.0.0.1:8080" when empty ("127.0.0.1:0" in tests).
	Listen string
	// BaseURL is the externally visible base URL including the deployment path;
	// "http://<actual listen address>/am" when empty.
	BaseURL string
	// DataDir holds the store; ignored when InMemory.
	DataDir string
	// InMemory keeps the store in a temporary file removed on Close.
	InMemory bool
	// Logger receives the server's logs; slog.Default() when nil.
	Logger *slog.Logger
	// ConfigFile is a YAML file overriding DefaultSettings; ignored when Settings is set.
	ConfigFile string
	// Settings, when non-nil, is used as is instead of DefaultSettings and ConfigFile.
	Settings *Settings
	// Now is the clock; time.Now when nil. Tests move it to expire things.
	Now func() time.Time
}

// LoadSettings reads a YAML config file on top of DefaultSettings. Errors
// name the position as FILE:LINE:COL.
func LoadSettings(path string) (Settings, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Settings{}, fmt.Errorf("amdev config: %w", err)
	}
	return ParseSettings(path, data)
}

// ParseSettings decodes YAML config data (named filename in errors) on top of DefaultSettings.
func ParseSettings(filename string, data []byte) (Settings, error) {
	s := DefaultSettings()
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return Settings{}, positionError(filename, err)
	}
	if len(root.Content) == 0 {
		return s, nil // empty file: defaults
	}
	doc := root.Content[0]
	if err := checkKnownFields(doc, s); err != nil {
		return Settings{}, positionError(filename, err)
	}
	if err := doc.Decode(&s); err != nil {
		return Settings{}, positionError(filename, err)
	}
	base := filepath.Dir(filename)
	for i, ca := range s.CertificateAuthorities {
		if ca != builtinES256Test && !filepath.IsAbs(ca) {
			s.CertificateAuthorities[i] = filepath.Join(base, ca)
		}
	}
	if err := s.validate(); err != nil {
		var ve *validationError
		if errors.As(err, &ve) {
			line, col := locate(doc, ve.path...)
			return Settings{}, fmt.Errorf("%s:%d:%d: %s", filename, line, col, ve.msg)
		}
		return Settings{}, fmt.Errorf("%s: %w", filename, err)
	}
	return s, nil
}

var yamlLine = regexp.MustCompile(`line (\d+)(?:, column (\d+))?: `)

// positionError turns yaml.v3's "line N: msg" errors into "FILE:N:COL: msg" lines.
func positionError(filename string, err error) error {
	var lines []string
	for _, l := range strings.Split(strings.TrimPrefix(err.Error(), "yaml: unmarshal errors:\n"), "\n") {
		l = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(l), "yaml: "))
		if l == "" {
			continue
		}
		line, col := "1", "1"
		if m := yamlLine.FindStringSubmatchIndex(l); m != nil {
			line = l[m[2]:m[3]]
			if m[4] >= 0 {
				col = l[m[4]:m[5]]
			}
			l = l[:m[0]] + l[m[1]:]
		}
		lines = append(lines, fmt.Sprintf("%s:%s:%s: %s", filename, line, col, l))
	}
	return errors.New(strings.Join(lines, "\n"))
}

// checkKnownFields refuses mapping keys that are not yaml tags of v's struct
// type, so a typo in a config file is an error instead of a silent default.
func checkKnownFields(n *yaml.Node, v any) error {
	t := reflect.TypeOf(v)
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || n.Kind != yaml.MappingNode {
		return nil
	}
	known := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name != "" && name != "-" {
			known[name] = f.Type
		}
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		ft, ok := known[k.Value]
		if !ok {
			return fmt.Errorf("line %d, column %d: unknown field %q", k.Line, k.Column, k.Value)
		}
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct && ft != reflect.TypeFor[Duration]() {
			if err := checkKnownFields(n.Content[i+1], reflect.New(ft).Elem().Interface()); err != nil {
				return err
			}
		}
	}
	return nil
}

// locate finds the line and column of the key at path in a YAML mapping tree.
func locate(n *yaml.Node, path ...string) (int, int) {
	line, col := n.Line, n.Column
	for _, p := range path {
		if n.Kind != yaml.MappingNode {
			break
		}
		found := false
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == p {
				line, col = n.Content[i].Line, n.Content[i].Column
				n = n.Content[i+1]
				found = true
				break
			}
		}
		if !found {
			break
		}
	}
	return line, col
}

type validationError struct {
	path []string
	msg  string
}

func (e *validationError) Error() string { return strings.Join(e.path, ".") + ": " + e.msg }

func invalid(msg string, path ...string) error { return &validationError{path: path, msg: msg} }

// validate checks the settings' internal consistency.
func (s *Settings) validate() error {
	if s.CookieName == "" || strings.ContainsAny(s.CookieName, " ;=,") {
		return invalid("cookieName must be a non-empty token", "cookieName")
	}
	if err := s.validateSSFReceivers(); err != nil {
		return err
	}
	for _, r := range s.Realms {
		if _, err := normalizeRealmPath(r); err != nil {
			return invalid(err.Error(), "realms")
		}
	}
	for alias, r := range s.RealmAliases {
		if _, err := normalizeRealmPath(r); err != nil || strings.Contains(alias, "/") {
			return invalid("alias must be a name without slashes mapping to a realm path", "realmAliases", alias)
		}
	}
	for host, r := range s.RealmHosts {
		p, err := normalizeRealmPath(r)
		if err != nil || host == "" || strings.ContainsAny(host, ":/ ") || host != strings.ToLower(host) {
			return invalid("a DNS alias must be a lower-case host name without port mapping to a realm path", "realmHosts", host)
		}
		if p != "/" && !slices.ContainsFunc(s.Realms, func(r string) bool { n, _ := normalizeRealmPath(r); return n == p }) {
			return invalid("DNS alias names a realm that is not configured", "realmHosts", host)
		}
	}
	for i, p := range s.TrustedProxies {
		if _, err := parseProxy(p); err != nil {
			return invalid("a trusted proxy must be an IP address or a CIDR prefix such as 10.0.0.0/8", "trustedProxies", strconv.Itoa(i))
		}
	}
	if s.Admin.Username == "" || s.Admin.Password == "" {
		return invalid("admin needs username and password", "admin")
	}
	if s.Clients[s.IoT.OAuthClientName] == nil {
		return invalid(fmt.Sprintf("client %q is not defined under clients", s.IoT.OAuthClientName), "iotService", "oauthClientName")
	}
	switch s.IoT.BindThingTokens {
	case BindNone, BindKey, BindCertificate:
	default:
		return invalid(`bindThingTokens must be "", "key" or "certificate"`, "iotService", "bindThingTokens")
	}
	switch s.OAuth2.TokenFormat {
	case "jwt", "opaque":
	default:
		return invalid(`tokenFormat must be "jwt" or "opaque"`, "oauth2", "tokenFormat")
	}
	if !slices.Contains(tokenSigningAlgorithms, s.OAuth2.SigningAlgorithm) {
		return invalid("tokenSigningAlgorithm must be one of "+strings.Join(tokenSigningAlgorithms, ", "), "oauth2", "tokenSigningAlgorithm")
	}
	if s.OAuth2.AccessTokenLifetime <= 0 || s.OAuth2.RefreshTokenLifetime <= 0 || s.OAuth2.DeviceCodeLifetime <= 0 {
		return invalid("token and device code lifetimes must be positive", "oauth2")
	}
	if s.MaxPendingAuth <= 0 || s.MaxPendingAuthPerSource <= 0 || s.MaxPendingAuthPerSource > s.MaxPendingAuth {
		return invalid("maxPendingAuth and maxPendingAuthPerSource must be positive, the share at most the total", "maxPendingAuthPerSource")
	}
	if l := s.LoginThrottle; l.AccountFailures <= 0 || l.SourceFailures <= 0 || l.Duration <= 0 {
		return invalid("accountFailures, sourceFailures and duration must be positive", "loginThrottle")
	}
	if s.AssertionMaxLifetime <= 0 {
		return invalid("assertionMaxLifetime must be positive", "assertionMaxLifetime")
	}
	if s.AuthIDLifetime <= 0 || s.SessionLifetime <= 0 {
		return invalid("authIdLifetime and sessionLifetime must be positive", "authIdLifetime")
	}
	for id, c := range s.Clients {
		if c.Secret == "" {
			return invalid("client needs a secret", "clients", id, "secret")
		}
		for _, d := range c.DefaultScopes {
			if !slices.Contains(c.Scopes, d) {
				return invalid(fmt.Sprintf("default scope %q is not one of the client's scopes", d), "clients", id, "defaultScopes")
			}
		}
	}
	for id, p := range s.SoftwarePublishers {
		if p.Issuer == "" {
			return invalid("software publisher needs an issuer", "softwarePublishers", id, "issuer")
		}
		var set jose.JSONWebKeySet
		if err := json.Unmarshal([]byte(p.JWKS), &set); err != nil || len(set.Keys) == 0 {
			return invalid("jwks must be a JSON Web Key Set with at least one key", "softwarePublishers", id, "jwks")
		}
	}
	for id, u := range s.Users {
		if u.Password == "" {
			return invalid("user needs a password", "users", id, "password")
		}
		if !s.hasRealm(u.Realm) {
			return invalid(fmt.Sprintf("realm %s is not configured", quote(u.Realm)), "users", id, "realm")
		}
	}
	for id := range s.Users {
		if err := s.reservedName(id); err != nil {
			return invalid(err.Error(), "users", id)
		}
	}
	for id, t := range s.Things {
		if err := s.reservedName(id); err != nil {
			return invalid(err.Error(), "things", id)
		}
		if !s.hasRealm(t.Realm) {
			return invalid(fmt.Sprintf("realm %s is not configured", quote(t.Realm)), "things", id, "realm")
		}
		if t.ThingKeys != "" {
			if _, err := parseThingKeys(t.ThingKeys); err != nil {
				return invalid(err.Error(), "things", id, "thingKeys")
			}
		}
	}
	if s.Trees[s.DefaultTree] == nil {
		return invalid(fmt.Sprintf("tree %q is not defined", s.DefaultTree), "defaultTree")
	}
	for name, t := range s.Trees {
		if err := t.validate(); err != nil {
			return invalid(err.Error(), "trees", name)
		}
	}
	return nil
}

// hasRealm reports whether the realm path (empty: root) is configured.
func (s *Settings) hasRealm(realm string) bool {
	p, err := normalizeRealmPath(realm)
	if err != nil {
		return false
	}
	if p == "/" {
		return true
	}
	for _, r := range s.Realms {
		if n, err := normalizeRealmPath(r); err == nil && (n == p || strings.HasPrefix(n, p+"/")) {
			return true
		}
	}
	return false
}

func (t *Tree) validate() error {
	if t.UsernamePassword {
		if t.Authenticate != nil || t.Register != nil {
			return errors.New("a usernamePassword tree has no thing nodes")
		}
		return nil
	}
	if t.Authenticate == nil && t.Register == nil {
		return errors.New("a tree needs authenticate, register or usernamePassword")
	}
	if a := t.Authenticate; a != nil && a.Method != MethodProofOfPossession && a.Method != MethodClientAssertion {
		return fmt.Errorf("authenticate.jwtAuthenticationMethod %q: want %s or %s", a.Method, MethodProofOfPossession, MethodClientAssertion)
	}
	if r := t.Register; r != nil {
		switch r.Method {
		case MethodPoPWithCertificate, MethodPoPWithSoftwareStatement, MethodPoPWithoutTrust, MethodSoftwareStatementOnly:
		default:
			return fmt.Errorf("register.jwtRegistrationMethod %q: want one of %s, %s, %s, %s", r.Method,
				MethodPoPWithCertificate, MethodPoPWithSoftwareStatement, MethodPoPWithoutTrust, MethodSoftwareStatementOnly)
		}
		if r.NameValidationRegex != "" {
			if _, err := regexp.Compile(r.NameValidationRegex); err != nil {
				return fmt.Errorf("register.nameValidationRegex: %w", err)
			}
		}
		if r.NamePattern != "" {
			if _, err := regexp.Compile(`^(?:` + r.NamePattern + `)$`); err != nil {
				return fmt.Errorf("register.namePattern: %w", err)
			}
		}
	}
	return nil
}

// loadCAKeys returns the public keys of the configured certificate
// authorities. Only the key matters: AM uses the mapped secret as a key, so an
// expired CA certificate (es256test expired in 2020) still verifies.
func loadCAKeys(paths []string) ([]crypto.PublicKey, error) {
	var keys []crypto.PublicKey
	for _, p := range paths {
		data := es256testCAPEM
		if p != builtinES256Test {
			var err error
			if data, err = os.ReadFile(p); err != nil {
				return nil, fmt.Errorf("certificate authority: %w", err)
			}
		}
		n := 0
		for rest := bytes.TrimSpace(data); len(rest) > 0; {
			var block *pem.Block
			block, rest = pem.Decode(rest)
			if block == nil {
				break
			}
			if block.Type != "CERTIFICATE" {
				continue
			}
			cert, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("certificate authority %s: %w", p, err)
			}
			keys = append(keys, cert.PublicKey)
			n++
		}
		if n == 0 {
			return nil, fmt.Errorf("certificate authority %s: no PEM certificate", p)
		}
	}
	return keys, nil
}

// quote quotes a value for an error message.
func quote(s string) string { return strconv.Quote(s) }
