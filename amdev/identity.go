package amdev

import (
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"

	"imb/amdev/store"
)

const bucketIdentities = "identities"

// identity is an AM identity: a thing or a human user. Attributes are LDAP
// style multi-valued strings; thingKeys holds the JWKS as JSON text.
type identity struct {
	Realm        string              `json:"realm"`
	ID           string              `json:"id"`
	Attributes   map[string][]string `json:"attributes"`
	PasswordHash string              `json:"passwordHash,omitempty"`
	Created      time.Time           `json:"created"`
}

func (id *identity) attr(name string) string {
	if v := id.Attributes[name]; len(v) > 0 {
		return v[0]
	}
	return ""
}

func (id *identity) setAttr(name, value string) {
	if id.Attributes == nil {
		id.Attributes = map[string][]string{}
	}
	if value == "" {
		delete(id.Attributes, name)
		return
	}
	id.Attributes[name] = []string{value}
}

// isThing reports whether the identity is a thing (it has IoT attributes)
// rather than a human user.
func (id *identity) isThing() bool {
	return id.attr("thingType") != "" || id.attr("thingKeys") != ""
}

// keys parses the identity's thingKeys; an identity without keys has an empty set.
func (id *identity) keys() (*jose.JSONWebKeySet, error) {
	raw := id.attr("thingKeys")
	if raw == "" {
		return &jose.JSONWebKeySet{}, nil
	}
	return parseThingKeys(raw)
}

// parseThingKeys parses a JWKS given as JSON text.
func parseThingKeys(raw string) (*jose.JSONWebKeySet, error) {
	var set jose.JSONWebKeySet
	if err := json.Unmarshal([]byte(raw), &set); err != nil {
		return nil, fmt.Errorf("thingKeys is not a JSON Web Key Set: %w", err)
	}
	for _, k := range set.Keys {
		if !k.IsPublic() {
			return nil, errors.New("thingKeys must hold public keys only")
		}
	}
	return &set, nil
}

func identityKey(realm, id string) string { return realm + "\x00" + id }

var errNoIdentity = errors.New("no such identity")

func (s *Server) getIdentity(realm, id string) (*identity, error) {
	if id == "" {
		return nil, errNoIdentity
	}
	var ident identity
	err := s.db.Get(bucketIdentities, identityKey(realm, id), &ident, s.now())
	if errors.Is(err, store.ErrNotFound) {
		return nil, errNoIdentity
	}
	if err != nil {
		return nil, err
	}
	return &ident, nil
}

func (s *Server) putIdentity(ident *identity) error {
	if ident.Created.IsZero() {
		ident.Created = s.now().UTC()
	}
	return s.db.Put(bucketIdentities, identityKey(ident.Realm, ident.ID), ident, time.Time{})
}

func (s *Server) deleteIdentity(realm, id string) (bool, error) {
	return s.db.Delete(bucketIdentities, identityKey(realm, id))
}

// seed creates the configured users and things that are not in the store yet;
// changes made through the REST API are kept across restarts.
func (s *Server) seed() error {
	now := s.now()
	for id, u := range s.settings.Users {
		ident := &identity{ID: id, Created: now.UTC(),
			Attributes: map[string][]string{"cn": {id}, "sn": {id}, "mail": {id + "@example.com"}}}
		if err := s.seedIdentity(ident, u.Realm, u.Password); err != nil {
			return fmt.Errorf("user %s: %w", id, err)
		}
	}
	for id, t := range s.settings.Things {
		ident := &identity{ID: id, Created: now.UTC()}
		ident.setAttr("thingType", t.ThingType)
		ident.setAttr("thingKeys", t.ThingKeys)
		ident.setAttr("thingConfig", t.ThingConfig)
		ident.setAttr("thingProperties", t.ThingProperties)
		ident.setAttr("thingOAuth2ClientName", t.ThingOAuth2ClientName)
		if err := s.seedIdentity(ident, t.Realm, t.Password); err != nil {
			return fmt.Errorf("thing %s: %w", id, err)
		}
	}
	return nil
}

// seedIdentity stores ident in realm unless it exists; the password is
// hashed only then, as hashing is deliberately slow.
func (s *Server) seedIdentity(ident *identity, realm, password string) error {
	var err error
	if ident.Realm, err = normalizeRealmPath(realm); err != nil {
		return err
	}
	s.realmTab.mu.RLock()
	deleted := s.realmTab.deleted[ident.Realm]
	s.realmTab.mu.RUnlock()
	if deleted {
		return nil // the admin REST deleted the realm, and its identities with it
	}
	if _, err := s.getIdentity(ident.Realm, ident.ID); !errors.Is(err, errNoIdentity) {
		return err
	}
	if password != "" {
		if ident.PasswordHash, err = hashPassword(password); err != nil {
			return err
		}
	}
	_, err = s.db.PutIfAbsent(bucketIdentities, identityKey(ident.Realm, ident.ID), ident, time.Time{}, s.now())
	return err
}

const pbkdf2Iterations = 100_000

// hashPassword stores passwords as PBKDF2-SHA256, never in clear.
func hashPassword(pw string) (string, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("password salt: %w", err)
	}
	dk, err := pbkdf2.Key(sha256.New, pw, salt, pbkdf2Iterations, 32)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return fmt.Sprintf("pbkdf2-sha256$%d$%s$%s", pbkdf2Iterations,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(dk)), nil
}

func checkPassword(hash, pw string) bool {
	parts := strings.Split(hash, "$")
	if len(parts) != 4 || parts[0] != "pbkdf2-sha256" {
		return false
	}
	iter, err := strconv.Atoi(parts[1])
	if err != nil || iter < 1 || iter > 10_000_000 {
		return false
	}
	salt, err1 := base64.RawStdEncoding.DecodeString(parts[2])
	want, err2 := base64.RawStdEncoding.DecodeString(parts[3])
	if err1 != nil || err2 != nil {
		return false
	}
	got, err := pbkdf2.Key(sha256.New, pw, salt, iter, len(want))
	return err == nil && subtle.ConstantTimeCompare(got, want) == 1
}

// checkUserPassword checks a login against the admin account (root realm,
// case-insensitive name) and identities with a password. It returns the
// canonical id and whether it is the admin.
func (s *Server) checkUserPassword(realm, user, pw string) (id string, admin, ok bool) {
	if realm == "/" && strings.EqualFold(user, s.settings.Admin.Username) {
		if subtle.ConstantTimeCompare([]byte(pw), []byte(s.settings.Admin.Password)) == 1 {
			return s.settings.Admin.Username, true, true
		}
		return "", false, false
	}
	ident, err := s.getIdentity(realm, user)
	if err != nil || ident.PasswordHash == "" || !checkPassword(ident.PasswordHash, pw) {
		return "", false, false
	}
	return ident.ID, false, true
}

func sortStrings(v []string) { sort.Strings(v) }

// containsAll reports whether every element of sub is in set.
func containsAll(set, sub []string) bool {
	for _, x := range sub {
		if !slices.Contains(set, x) {
			return false
		}
	}
	return true
}
