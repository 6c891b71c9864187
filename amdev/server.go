package amdev

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"imb/amdev/store"
)

// Server is a running amdev instance.
type Server struct {
	settings Settings
	realmTab *realmTable
	baseURL  string // no trailing slash
	basePath string // path part of baseURL, "" or "/am"
	origin   string // scheme://host[:port] of baseURL
	log      *slog.Logger
	now      func() time.Time
	db       *store.DB
	keys     keyring // token signing and encryption keys, by secret id and alias
	// caKeys verify registration certificates; caEntries are the
	// certificateAuthorities entries they come from (the admin REST's
	// secret mapping chooses among them).
	caMu      sync.RWMutex
	caKeys    []crypto.PublicKey
	caEntries []string

	mu          sync.Mutex
	authStates  *pendingAuths
	sessions    map[string]*session
	deviceCodes map[string]*deviceCode // by device_code
	userCodes   map[string]string      // user_code → device_code
	seenJTIs    *replayCache           // client assertions used, until their exp
	// passwordGuard and userCodeGuard throttle password and user-code guesses.
	passwordGuard, userCodeGuard *guessGuard
	secureCookies                bool // the base URL is https

	// providers are the realms' OAuth2 Provider settings changed through the
	// admin REST (realm-config/services/oauth-oidc); a realm not in it uses
	// settings.OAuth2.
	provMu    sync.RWMutex
	providers map[string]OAuth2Provider
	// iotServices are the realms' IoT Services changed through the admin REST.
	iotServices map[string]IoTService
	// agents are the realms' OAuth2 clients changed through the admin REST.
	agents realmClients
	// pubAgents are the realms' software publishers changed through the admin REST.
	pubAgents realmPublishers
	// journeys are the realms' trees and nodes changed through the admin REST.
	journeys journeys
	// adminSave serialises the writes of the admin REST's state (admin_state.go).
	adminSave sync.Mutex
	// tx transmits Security Event Tokens (transmit.go); pairMu guards the device pairings (pairings.go).
	tx     *transmitter
	pairMu sync.Mutex

	listener net.Listener
	http     *http.Server
	stop     chan struct{}
	wg       sync.WaitGroup
	closed   sync.Once
	closeErr error
}

// Start opens the store, loads settings and keys, and serves HTTP; the server
// is listening when Start returns. Close stops it.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	settings, err := resolveSettings(cfg)
	if err != nil {
		return nil, err
	}
	s := &Server{
		settings:      settings,
		realmTab:      newRealmTable(settings),
		log:           cfg.Logger,
		now:           cfg.Now,
		authStates:    newPendingAuths(settings.MaxPendingAuth, settings.MaxPendingAuthPerSource),
		sessions:      map[string]*session{},
		deviceCodes:   map[string]*deviceCode{},
		userCodes:     map[string]string{},
		seenJTIs:      newReplayCache(maxSeenAssertions, maxSeenAssertionsPerIssuer),
		passwordGuard: newGuessGuard(settings.LoginThrottle),
		userCodeGuard: newGuessGuard(settings.LoginThrottle),
		stop:          make(chan struct{}),
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.log = s.log.With("component", "amdev")
	if s.now == nil {
		s.now = time.Now
	}
	for _, p := range settings.SoftwarePublishers {
		if _, err := parseThingKeys(p.JWKS); err != nil {
			return nil, fmt.Errorf("amdev: software publisher %s: %w", p.Issuer, err)
		}
	}
	s.caEntries = slices.Clone(settings.CertificateAuthorities)
	if s.caKeys, err = loadCAKeys(settings.CertificateAuthorities); err != nil {
		return nil, fmt.Errorf("amdev: %w", err)
	}
	if cfg.InMemory {
		s.db, err = store.OpenTemp()
	} else {
		dir := cfg.DataDir
		if dir == "" {
			return nil, errors.New("amdev: DataDir is required unless InMemory")
		}
		s.db, err = store.Open(dir)
	}
	if err != nil {
		return nil, fmt.Errorf("amdev: %w", err)
	}
	if err := s.init(ctx, cfg); err != nil {
		_ = s.db.Close()
		return nil, err
	}
	return s, nil
}

// init loads keys, seeds identities and starts listening.
func (s *Server) init(ctx context.Context, cfg Config) error {
	var err error
	if err := s.loadKeyring(); err != nil {
		return fmt.Errorf("amdev: %w", err)
	}
	if err := s.loadAdminState(); err != nil {
		return fmt.Errorf("amdev: %w", err)
	}
	if err := s.seed(); err != nil {
		return fmt.Errorf("amdev: %w", err)
	}
	listen := cfg.Listen
	if listen == "" {
		listen = "127.0.0.1:8080"
	}
	var lc net.ListenConfig
	if s.listener, err = lc.Listen(ctx, "tcp", listen); err != nil {
		return fmt.Errorf("amdev: listen %s: %w", listen, err)
	}
	base := cfg.BaseURL
	if base == "" {
		base = "http://" + s.listener.Addr().String() + "/am"
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" {
		_ = s.listener.Close()
		return fmt.Errorf("amdev: base URL %q: want http(s)://host[:port][/path]", base)
	}
	s.baseURL = strings.TrimSuffix(base, "/")
	s.secureCookies = u.Scheme == "https"
	s.basePath = strings.TrimSuffix(u.Path, "/")
	s.origin = u.Scheme + "://" + u.Host
	s.http = &http.Server{
		Handler:           s.recoverer(http.HandlerFunc(s.route)),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	if err := s.startTransmitter(); err != nil { // last: nothing fails after its goroutines start
		_ = s.listener.Close()
		return fmt.Errorf("amdev: %w", err)
	}
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		if err := s.http.Serve(s.listener); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("serve", "err", err)
		}
	}()
	go func() {
		defer s.wg.Done()
		s.janitor()
	}()
	s.log.Info("amdev listening", "url", s.baseURL, "addr", s.listener.Addr().String())
	return nil
}

func parentRealm(p string) string {
	i := strings.LastIndex(p, "/")
	if i <= 0 {
		return "/"
	}
	return p[:i]
}

func resolveSettings(cfg Config) (Settings, error) {
	switch {
	case cfg.Settings != nil:
		s := *cfg.Settings
		if err := s.validate(); err != nil {
			return Settings{}, fmt.Errorf("amdev settings: %w", err)
		}
		return s, nil
	case cfg.ConfigFile != "":
		return LoadSettings(cfg.ConfigFile)
	default:
		return DefaultSettings(), nil
	}
}

// URL is the base URL, e.g. http://127.0.0.1:8080/am.
func (s *Server) URL() string { return s.baseURL }

// Issuer is the root realm's OAuth 2.0 issuer, URL()+"/oauth2".
func (s *Server) Issuer() string { return s.oauthBase("/") }

// Addr is the listening address.
func (s *Server) Addr() string { return s.listener.Addr().String() }

// Settings returns the settings in use; its maps are shared, do not modify them
// (secrets included: do not log it).
func (s *Server) Settings() Settings { return s.settings }

// Close stops serving (in-flight requests get up to 5 s) and closes the store.
func (s *Server) Close() error {
	s.closed.Do(func() {
		close(s.stop)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err := s.http.Shutdown(ctx)
		if err != nil {
			err = errors.Join(err, s.http.Close())
		}
		s.wg.Wait()
		if cerr := s.db.Close(); cerr != nil {
			err = errors.Join(err, cerr)
		}
		s.closeErr = err
	})
	return s.closeErr
}

// janitor purges expired in-memory state and store records once a minute.
func (s *Server) janitor() {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.sweep()
		}
	}
}

func (s *Server) sweep() {
	now := s.now()
	s.mu.Lock()
	s.authStates.expire(now)
	for k, ss := range s.sessions {
		if !now.Before(ss.expires) {
			delete(s.sessions, k)
		}
	}
	for k, d := range s.deviceCodes {
		if now.After(d.expires.Add(time.Hour)) {
			delete(s.deviceCodes, k)
			delete(s.userCodes, d.userCode)
		}
	}
	s.seenJTIs.sweep(now)
	s.mu.Unlock()
	if n, err := s.db.Sweep(now); err != nil {
		s.log.Warn("sweep store", "err", err)
	} else if n > 0 {
		s.log.Debug("swept expired records", "count", n)
	}
}

// recoverer turns a panic into a 500 CREST error instead of a dropped connection.
func (s *Server) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("panic in handler", "path", r.URL.Path, "panic", fmt.Sprint(v))
				writeError(w, errorf(http.StatusInternalServerError, "Internal Server Error"))
			}
		}()
		next.ServeHTTP(w, r)
	})
}
