package amdev

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Callback ids of the IoT nodes (§6.3; the spelling matters).
const (
	cbPoPAuthentication = "jwt-pop-authentication"
	cbClientAssertion   = "client_assertion"
	cbPoPRegistration   = "jwt-pop-registration"
	cbSoftwareStatement = "software_statement"
)

type authStage int

const (
	stageAuthenticate authStage = iota + 1
	stageRegister
	stageCredentials
)

// authState is the server side of an authId: which tree, realm and node the
// flow is at and the challenge it issued. The authId itself is a random,
// single-use handle, so it cannot be forged or replayed.
type authState struct {
	source    string // peer address, for its share of pending authIds
	tree      string
	realm     string
	stage     authStage
	challenge string
	expires   time.Time
}

// callback is one entry of the callbacks array.
type callback struct {
	Type   string    `json:"type"`
	Output []cbEntry `json:"output"`
	Input  []cbEntry `json:"input"`
	ID     int       `json:"_id"`
}

type cbEntry struct {
	Name  string `json:"name"`
	Value any    `json:"value"`
}

// authRequest is the body of POST /json/authenticate.
type authRequest struct {
	AuthID    string     `json:"authId"`
	Callbacks []callback `json:"callbacks"`
}

// answers are the filled-in callbacks of a request.
type answers struct {
	hidden   map[string]string // HiddenValueCallback id → answer
	username string
	password string
	hasCreds bool
}

func parseAnswers(cbs []callback) answers {
	a := answers{hidden: map[string]string{}}
	for _, cb := range cbs {
		input := ""
		if len(cb.Input) > 0 {
			input, _ = cb.Input[0].Value.(string)
		}
		switch cb.Type {
		case "HiddenValueCallback":
			id := ""
			for _, o := range cb.Output {
				if o.Name == "id" {
					id, _ = o.Value.(string)
				}
			}
			if id != "" && input != "" && input != id {
				a.hidden[id] = input
			}
		case "NameCallback":
			a.username, a.hasCreds = input, true
		case "PasswordCallback":
			a.password, a.hasCreds = input, true
		}
	}
	return a
}

// handleAuthenticate serves POST /json/authenticate: zero-page header login
// and the callback exchange of the configured trees.
func (s *Server) handleAuthenticate(w http.ResponseWriter, r *http.Request, realm string, pathRealm bool) error {
	if err := requireMethod(r, http.MethodPost); err != nil {
		return err
	}
	if err := checkResource(r, "1", "2"); err != nil {
		return err
	}
	q := r.URL.Query()
	if !pathRealm {
		var err error
		if realm, err = s.resolveRealm(q.Get("realm"), r.Host); err != nil {
			return errBadRequest("Invalid realm, %s", err)
		}
	} else if !s.realmExists(realm) {
		return errBadRequest("Invalid realm")
	}
	if user := r.Header.Get("X-OpenAM-Username"); user != "" {
		return s.headerLogin(w, r, realm, user, r.Header.Get("X-OpenAM-Password"))
	}
	var req authRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil && !errors.Is(err, io.EOF) {
		return errBadRequest("Invalid authentication request body").with(err)
	}
	treeName := q.Get("authIndexValue")
	switch q.Get("authIndexType") {
	case "", "service", "composite_advice":
	default:
		return errBadRequest("Unsupported authIndexType %s", quote(q.Get("authIndexType")))
	}
	if treeName == "" {
		treeName = s.settings.DefaultTree
	}
	tree := s.tree(realm, treeName)
	if tree == nil {
		return errBadRequest("No configuration found")
	}
	ans := parseAnswers(req.Callbacks)
	var st *authState
	if req.AuthID != "" {
		var err error
		if st, err = s.takeAuthState(req.AuthID); err != nil {
			return err
		}
		if st.tree != treeName || st.realm != realm {
			return errLoginFailure()
		}
	} else {
		st = &authState{tree: treeName, realm: realm, stage: firstStage(tree)}
	}
	st.source = sourceAddr(r)
	return s.step(w, r, st, tree, ans, req.AuthID == "")
}

func firstStage(t *Tree) authStage {
	switch {
	case t.UsernamePassword:
		return stageCredentials
	case t.Authenticate != nil:
		return stageAuthenticate
	default:
		return stageRegister
	}
}

// takeAuthState removes and returns the state of an authId: each authId is good for one round.
func (s *Server) takeAuthState(id string) (*authState, error) {
	s.mu.Lock()
	st := s.authStates.take(id)
	s.mu.Unlock()
	if st == nil {
		return nil, errLoginFailure()
	}
	if !s.now().Before(st.expires) {
		return nil, errorf(http.StatusUnauthorized, "Session has timed out")
	}
	return st, nil
}

// step runs one round of the tree at the state's node.
func (s *Server) step(w http.ResponseWriter, r *http.Request, st *authState, tree *Tree, ans answers, first bool) error {
	switch st.stage {
	case stageCredentials:
		if !ans.hasCreds {
			return s.challenge(w, st, credentialCallbacks())
		}
		id, admin, err := s.checkLogin(r, st.realm, ans.username, ans.password)
		if err != nil {
			return err
		}
		kind := kindUser
		if admin {
			kind = kindAdmin
		}
		return s.loginSuccess(w, s.newSession(st.realm, id, kind, false, nil))
	case stageAuthenticate:
		node := tree.Authenticate
		cbID := cbPoPAuthentication
		if node.Method == MethodClientAssertion {
			cbID = cbClientAssertion
		}
		answer, ok := ans.hidden[cbID]
		// A first request may carry a filled client_assertion: it needs no challenge.
		if first && !(ok && cbID == cbClientAssertion) {
			return s.challengeAuthenticate(w, st, node)
		}
		if !ok {
			return errLoginFailure()
		}
		res, err := s.authenticateThing(r, st, tree, answer)
		if err != nil {
			return err
		}
		if res.register {
			if tree.Register == nil {
				return errLoginFailure()
			}
			st.stage = stageRegister
			return s.challengeRegister(w, st, tree.Register)
		}
		restricted := node.IssueRestrictedToken && node.Method == MethodProofOfPossession
		return s.loginSuccess(w, s.newSession(st.realm, res.id, kindThing, restricted, res.key))
	case stageRegister:
		node := tree.Register
		reg, hasReg := ans.hidden[cbPoPRegistration]
		stmt, hasStmt := ans.hidden[cbSoftwareStatement]
		if first && !(hasStmt && node.Method == MethodSoftwareStatementOnly) {
			return s.challengeRegister(w, st, node)
		}
		if !hasReg && !hasStmt {
			return errLoginFailure()
		}
		res, err := s.registerThing(st, tree, reg, stmt)
		if err != nil {
			return err
		}
		restricted := tree.Authenticate != nil && tree.Authenticate.IssueRestrictedToken
		return s.loginSuccess(w, s.newSession(st.realm, res.id, kindThing, restricted, res.key))
	}
	return errLoginFailure()
}

func (s *Server) challengeAuthenticate(w http.ResponseWriter, st *authState, node *AuthenticateNode) error {
	if node.Method == MethodClientAssertion {
		st.challenge = ""
		return s.challenge(w, st, []callback{hiddenCallback(cbClientAssertion, "", 1)})
	}
	st.challenge = randomToken(16)
	return s.challenge(w, st, []callback{hiddenCallback(cbPoPAuthentication, st.challenge, 1)})
}

func (s *Server) challengeRegister(w http.ResponseWriter, st *authState, node *RegisterNode) error {
	st.challenge = ""
	switch node.Method {
	case MethodSoftwareStatementOnly:
		return s.challenge(w, st, []callback{hiddenCallback(cbSoftwareStatement, "", 1)})
	case MethodPoPWithSoftwareStatement:
		st.challenge = randomToken(16)
		return s.challenge(w, st, []callback{hiddenCallback(cbPoPRegistration, st.challenge, 1),
			hiddenCallback(cbSoftwareStatement, "", 2)})
	default:
		st.challenge = randomToken(16)
		return s.challenge(w, st, []callback{hiddenCallback(cbPoPRegistration, st.challenge, 1)})
	}
}

func hiddenCallback(id, value string, n int) callback {
	return callback{
		Type:   "HiddenValueCallback",
		Output: []cbEntry{{Name: "value", Value: value}, {Name: "id", Value: id}},
		Input:  []cbEntry{{Name: "IDToken" + strconv.Itoa(n), Value: id}},
		ID:     n - 1,
	}
}

func credentialCallbacks() []callback {
	return []callback{
		{Type: "NameCallback", Output: []cbEntry{{Name: "prompt", Value: "User Name"}},
			Input: []cbEntry{{Name: "IDToken1", Value: ""}}, ID: 0},
		{Type: "PasswordCallback", Output: []cbEntry{{Name: "prompt", Value: "Password"}},
			Input: []cbEntry{{Name: "IDToken2", Value: ""}}, ID: 1},
	}
}

// challenge stores the state under a fresh authId and answers the callbacks.
// The pending authIds are bounded (maxPendingAuth, maxPendingAuthPerSource):
// beyond, the oldest is evicted, so no flood can refuse new flows.
func (s *Server) challenge(w http.ResponseWriter, st *authState, cbs []callback) error {
	now := s.now()
	st.expires = now.Add(time.Duration(s.settings.AuthIDLifetime))
	id := randomToken(48)
	s.mu.Lock()
	s.authStates.add(id, st.source, st, now)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"authId": id, "callbacks": cbs, "template": "", "stage": "",
		"header": "", "infoText": ""})
	return nil
}

func (s *Server) loginSuccess(w http.ResponseWriter, ss *session) error {
	http.SetCookie(w, s.cookie(s.settings.CookieName, ss.token, http.SameSiteLaxMode))
	writeJSON(w, http.StatusOK, map[string]any{"tokenId": ss.token, "successUrl": s.basePath + "/console",
		"realm": ss.realm})
	return nil
}

// headerLogin is zero-page login with X-OpenAM-Username/Password (§3.4).
func (s *Server) headerLogin(w http.ResponseWriter, r *http.Request, realm, user, pw string) error {
	id, admin, err := s.checkLogin(r, realm, user, pw)
	if err != nil {
		return err
	}
	kind := kindUser
	if admin {
		kind = kindAdmin
	}
	return s.loginSuccess(w, s.newSession(realm, id, kind, false, nil))
}

// authResult is the outcome of a thing node.
type authResult struct {
	register bool
	id       string
	key      *jose.JSONWebKey
}

// cookie is an HttpOnly cookie for the whole server, Secure when the base
// URL is https (a browser then never sends it over plain HTTP).
func (s *Server) cookie(name, value string, sameSite http.SameSite) *http.Cookie {
	return &http.Cookie{Name: name, Value: value, Path: "/", HttpOnly: true, Secure: s.secureCookies, SameSite: sameSite}
}
