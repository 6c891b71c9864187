package amdev

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
	"gopkg.in/yaml.v3"

	"imb/amdev/store"
)

// SSFReceiver is a receiver amdev pushes Security Event Tokens (RFC 8417) to, as RFC 8935 delivers them: the
// events of one realm, signed by amdev's transmitter key, with aud the receiver's Audience.
type SSFReceiver struct {
	// Realm whose events the receiver hears ("/" when empty).
	Realm string `yaml:"realm"`
	// URL is the receiver's push endpoint, e.g. http://127.0.0.1:9100/ssf/events.
	URL string `yaml:"url"`
	// Audience is the receiver as aud names it (the broker's ssf.audience).
	Audience string `yaml:"audience"`
}

// SETMediaType is the Content-Type of a pushed SET (RFC 8935 §2).
const SETMediaType = "application/secevent+jwt"

const (
	keyTransmitter = "ssf-transmitter" // the transmitter's key in bucketKeys
	// maxPendingSETs bounds the SETs queued or waiting for a retry; beyond it a new SET is dropped with a warning
	// (the receiver's re-check remains).
	maxPendingSETs = 1024
	// maxDeliveryAttempts and the backoff keep every retry well inside a receiver's max_age (5 minutes by
	// default): the last attempt is about 25 s after the first.
	maxDeliveryAttempts = 8
	firstRetryDelay     = 200 * time.Millisecond
	maxRetryDelay       = 30 * time.Second
	deliveryTimeout     = 5 * time.Second
	deliveryWorkers     = 2
)

// validate checks one configured receiver; path names it in errors.
func (r SSFReceiver) validate(path ...string) error {
	if r.Realm != "" {
		if _, err := normalizeRealmPath(r.Realm); err != nil {
			return invalid(err.Error(), append(path, "realm")...)
		}
	}
	u, err := url.Parse(r.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return invalid(fmt.Sprintf("url %q: want an absolute http or https URL", r.URL), append(path, "url")...)
	}
	if r.Audience == "" {
		return invalid("audience is required: the receiver as aud names it", append(path, "audience")...)
	}
	return nil
}

func (s *Settings) validateSSFReceivers() error {
	for i, r := range s.SSFReceivers {
		path := []string{"ssfReceivers", strconv.Itoa(i)}
		if err := r.validate(path...); err != nil {
			return err
		}
		if r.Realm != "" && !s.hasRealm(r.Realm) {
			return invalid(fmt.Sprintf("realm %q is not a configured realm", r.Realm), append(path, "realm")...)
		}
	}
	return nil
}

// UnmarshalYAML refuses keys a receiver does not have, as for every part of the settings.
func (r *SSFReceiver) UnmarshalYAML(n *yaml.Node) error {
	if err := checkKnownFields(n, SSFReceiver{}); err != nil {
		return err
	}
	type plain SSFReceiver
	return n.Decode((*plain)(r))
}

// transmitter signs and delivers amdev's SETs.
type transmitter struct {
	key    *ecdsa.PrivateKey
	kid    string
	signer jose.Signer
	log    *slog.Logger
	client *http.Client
	now    func() time.Time

	mu        sync.Mutex
	receivers []SSFReceiver

	queue   chan *delivery
	pending atomic.Int64 // queued, in flight or waiting for a retry
	stop    <-chan struct{}
	ctx     context.Context // ends when the server stops: in-flight pushes are abandoned
}

// delivery is one SET on its way to one receiver.
type delivery struct {
	to      SSFReceiver
	set     string
	jti     string
	event   string
	attempt int
}

// startTransmitter loads (or creates) the transmitter key, takes the configured receivers and starts the
// delivery workers, which end with the server.
func (s *Server) startTransmitter() error {
	key, kid, err := s.loadTransmitterKey()
	if err != nil {
		return err
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("secevent+jwt"))
	if err != nil {
		return fmt.Errorf("SET signer: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tx := &transmitter{key: key, kid: kid, signer: signer, log: s.log.With("component", "ssf-transmitter"),
		client: &http.Client{Timeout: deliveryTimeout, CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse // a receiver answers; it does not send the SET elsewhere
		}},
		now: s.now, receivers: slices.Clone(s.settings.SSFReceivers),
		queue: make(chan *delivery, maxPendingSETs), stop: s.stop, ctx: ctx}
	for i := range tx.receivers {
		tx.receivers[i].Realm, _ = normalizeRealmPath(tx.receivers[i].Realm) // validated: "" is "/"
	}
	s.tx = tx
	s.wg.Add(deliveryWorkers + 1)
	go func() {
		defer s.wg.Done()
		<-s.stop
		cancel()
	}()
	for range deliveryWorkers {
		go func() {
			defer s.wg.Done()
			tx.work()
		}()
	}
	return nil
}

// loadTransmitterKey is the ES256 key that signs SETs, kept in the store so that a receiver's cached key set
// stays good across restarts. It is not the token signing key: a SET can never pass for an access token.
func (s *Server) loadTransmitterKey() (*ecdsa.PrivateKey, string, error) {
	var sk storedKey
	err := s.db.Get(bucketKeys, keyTransmitter, &sk, s.now())
	switch {
	case errors.Is(err, store.ErrNotFound):
		priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, "", fmt.Errorf("generate SET signing key: %w", err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(priv)
		if err != nil {
			return nil, "", fmt.Errorf("encode SET signing key: %w", err)
		}
		kid, err := thumbprint(&priv.PublicKey)
		if err != nil {
			return nil, "", err
		}
		sk = storedKey{PKCS8: base64.StdEncoding.EncodeToString(der), KID: "ssf-" + kid}
		if err := s.db.Put(bucketKeys, keyTransmitter, sk, time.Time{}); err != nil {
			return nil, "", err
		}
	case err != nil:
		return nil, "", err
	}
	der, err := base64.StdEncoding.DecodeString(sk.PKCS8)
	if err != nil || len(der) > maxKeyBytes {
		return nil, "", errors.New("stored SET signing key is corrupt")
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, "", fmt.Errorf("stored SET signing key: %w", err)
	}
	priv, ok := k.(*ecdsa.PrivateKey)
	if !ok || priv.Curve != elliptic.P256() {
		return nil, "", errors.New("stored SET signing key is not a P-256 key")
	}
	return priv, sk.KID, nil
}

// SSFIssuer is the iss of the root realm's SETs: its OAuth 2.0 issuer plus /ssf.
func (s *Server) SSFIssuer() string { return s.ssfIssuer("/") }

// SSFJWKSURL is where the transmitter's key set is published (the root realm's URL; every realm's serves it).
func (s *Server) SSFJWKSURL() string { return s.ssfIssuer("/") + "/jwks" }

func (s *Server) ssfIssuer(realm string) string { return s.oauthBase(realm) + "/ssf" }

// AddSSFReceiver adds a receiver at run time (imb dev adds its broker's /ssf/events); it hears the events that
// happen from then on. Adding one with the URL and audience of one already there changes nothing.
func (s *Server) AddSSFReceiver(r SSFReceiver) error {
	if err := r.validate("receiver"); err != nil {
		return fmt.Errorf("amdev: SSF %w", err)
	}
	realm, err := normalizeRealmPath(r.Realm)
	if err != nil {
		return fmt.Errorf("amdev: SSF receiver: %w", err)
	}
	if !s.realmExists(realm) {
		return fmt.Errorf("amdev: SSF receiver: realm %q does not exist", r.Realm)
	}
	r.Realm = realm
	s.tx.mu.Lock()
	defer s.tx.mu.Unlock()
	if !slices.Contains(s.tx.receivers, r) {
		s.tx.receivers = append(s.tx.receivers, r)
	}
	s.log.Info("SSF receiver added", "realm", r.Realm, "url", r.URL, "audience", r.Audience)
	return nil
}

// handleSSFJWKS serves the transmitter's public key set.
func (s *Server) handleSSFJWKS(w http.ResponseWriter, r *http.Request) error {
	if err := requireMethod(r, http.MethodGet); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{
		Key: &s.tx.key.PublicKey, KeyID: s.tx.kid, Algorithm: string(jose.ES256), Use: "sig"}}})
	return nil
}

// handleSSFConfiguration serves the transmitter's metadata as the Shared Signals Framework's
// /.well-known/ssf-configuration describes it (issuer, key set, push delivery).
func (s *Server) handleSSFConfiguration(w http.ResponseWriter, r *http.Request, realm string) error {
	if err := requireMethod(r, http.MethodGet); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"spec_version": "1_0", "issuer": s.ssfIssuer(realm), "jwks_uri": s.ssfIssuer(realm) + "/jwks",
		"delivery_methods_supported": []string{"urn:ietf:rfc:8935"},
	})
	return nil
}

// transmit signs one SET per receiver of realm carrying one event and queues its delivery. txn ties the SETs
// of one action together (RFC 8417 §2.2). It never blocks: a full queue drops the SET with a warning.
func (s *Server) transmit(realm, txn, eventType string, payload map[string]any) {
	tx := s.tx
	tx.mu.Lock()
	var to []SSFReceiver
	for _, r := range tx.receivers {
		if r.Realm == realm {
			to = append(to, r)
		}
	}
	tx.mu.Unlock()
	for _, r := range to {
		jti := randomToken(18)
		claims := map[string]any{"iss": s.ssfIssuer(realm), "aud": r.Audience, "iat": tx.now().Unix(), "jti": jti,
			"events": map[string]any{eventType: payload}}
		if txn != "" {
			claims["txn"] = txn
		}
		set, err := tx.sign(claims)
		if err != nil {
			tx.log.Error("SET not signed", "event", eventType, "err", err)
			continue
		}
		tx.enqueue(&delivery{to: r, set: set, jti: jti, event: eventType})
	}
}

func (tx *transmitter) sign(claims map[string]any) (string, error) {
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("encode SET: %w", err)
	}
	obj, err := tx.signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("sign SET: %w", err)
	}
	return obj.CompactSerialize()
}
