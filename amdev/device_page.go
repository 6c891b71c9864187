package amdev

import (
	"crypto/subtle"
	"encoding/json"
	"html/template"
	"net/http"
	"net/url"
	"strings"
)

const loginCSRFCookie = "amdev-login-csrf"

// devicePage is the HTML of the device verification page. Every page embeds
// AM's pageData script object: scripts and tests read "done" and "errorCode" from it.
var devicePage = template.Must(template.New("device").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>amdev · Device authorization</title>
<style>body{font-family:sans-serif;max-width:32em;margin:3em auto}label{display:block;margin:.6em 0}</style>
<script>var pageData = {{.PageData}};</script>
</head><body>
<h1>Device authorization</h1>
{{if .Message}}<p role="alert">{{.Message}}</p>{{end}}
{{if eq .View "login"}}
<form method="post" action="{{.Action}}">
<p>Sign in to approve a device.</p>
<label>User name <input name="username" autocomplete="username" autofocus></label>
<label>Password <input name="password" type="password" autocomplete="current-password"></label>
<input type="hidden" name="user_code" value="{{.UserCode}}">
<input type="hidden" name="login_csrf" value="{{.LoginCSRF}}">
<button type="submit">Sign in</button>
</form>
{{else if eq .View "code"}}
<form method="post" action="{{.Action}}">
<p>Signed in as {{.User}}. Enter the code shown by your device.</p>
<label>Code <input name="user_code" value="{{.UserCode}}" autofocus></label>
<input type="hidden" name="csrf" value="{{.CSRF}}">
<button type="submit">Confirm</button>
</form>
{{else if eq .View "consent"}}
<form method="post" action="{{.Action}}">
<p><strong>{{.Client}}</strong> asks for access to your account{{if .Thing}} on behalf of the thing <strong>{{.Thing}}</strong>{{end}}:</p>
<ul>{{range .Scopes}}<li>{{.}}</li>{{end}}</ul>
<input type="hidden" name="user_code" value="{{.UserCode}}">
<input type="hidden" name="csrf" value="{{.CSRF}}">
<button type="submit" name="decision" value="allow">Allow</button>
<button type="submit" name="decision" value="deny">Deny</button>
</form>
{{else if eq .View "done"}}
<p>{{if eq .Decision "allow"}}Access granted. You may close this page and return to your device.{{else}}Access denied.{{end}}</p>
{{end}}
</body></html>
`))

type devicePageData struct {
	View, Action, Message, User, UserCode, CSRF, LoginCSRF, Client, Thing, Realm string
	Done                                                                         bool
	Decision, ErrorCode                                                          string
	Scopes                                                                       []string
}

// PageData is AM's pageData object literal. AM's templates emit `done: true`
// only on the page that follows a decision (allow and deny alike) and
// `errorCode: "…"` only on failure; clients scrape the page with a regex on
// each marker, so a marker must be absent, not empty, when it does not apply.
func (p devicePageData) PageData() template.JS {
	str := func(v string) string {
		b, _ := json.Marshal(v) // a string always encodes; < > & come out as \u escapes
		return string(b)
	}
	fields := []string{"realm: " + str(p.Realm)}
	if p.Done {
		fields = append(fields, "done: true")
	}
	if p.ErrorCode != "" {
		fields = append(fields, "errorCode: "+str(p.ErrorCode))
	}
	return template.JS("{ " + strings.Join(fields, ", ") + " }")
}

// handleDeviceUser serves the human side of the device grant: sign in (a
// plain form, or an existing SSO cookie from header login), enter the code,
// allow or deny. Every POST after sign-in carries csrf = the user's SSO token
// (AM's scheme); the sign-in form is protected by a double-submit cookie.
func (s *Server) handleDeviceUser(w http.ResponseWriter, r *http.Request, realm string) error {
	if err := requireMethod(r, http.MethodGet, http.MethodPost); err != nil {
		return err
	}
	page := devicePageData{Action: r.URL.Path, Realm: realm}
	if r.URL.RawQuery != "" {
		if q := r.URL.Query(); q.Has("realm") {
			page.Action += "?realm=" + url.QueryEscape(q.Get("realm"))
		}
	}
	ss := s.lookupSession(s.sessionToken(r))
	if ss != nil && ss.realm != realm {
		ss = nil
	}
	if r.Method == http.MethodGet {
		page.UserCode = r.URL.Query().Get("user_code")
		if ss == nil {
			return s.renderLogin(w, page, "")
		}
		page.View, page.User, page.CSRF = "code", ss.uid, ss.token
		return s.renderDevice(w, http.StatusOK, page)
	}
	if err := r.ParseForm(); err != nil {
		return errBadRequest("Invalid form body")
	}
	f := r.PostForm
	page.UserCode = strings.TrimSpace(f.Get("user_code"))
	if f.Has("username") {
		return s.deviceLogin(w, r, realm, page)
	}
	if ss == nil {
		return s.renderLogin(w, page, "Please sign in.")
	}
	if subtle.ConstantTimeCompare([]byte(f.Get("csrf")), []byte(ss.token)) != 1 {
		page.View, page.ErrorCode, page.Message = "error", "csrf", "The form is stale or forged; reload the page."
		return s.renderDevice(w, http.StatusForbidden, page)
	}
	page.User, page.CSRF = ss.uid, ss.token
	acct, src := accountKey(realm, ss.uid), sourceAddr(r)
	s.mu.Lock()
	herr := s.userCodeGuard.check(acct, src, s.now())
	s.mu.Unlock()
	if herr != nil {
		w.Header().Set("Retry-After", herr.retryAfter)
		page.View, page.ErrorCode, page.Message = "code", "too_many_attempts", "Too many wrong codes; try again later."
		return s.renderDevice(w, http.StatusTooManyRequests, page)
	}
	decision := f.Get("decision")
	if decision != "allow" && decision != "deny" {
		dc := s.pendingDevice(realm, page.UserCode)
		if dc == nil {
			s.wrongUserCode(acct, src)
			page.View, page.ErrorCode, page.Message = "code", "not_found", "That code is unknown or expired."
			return s.renderDevice(w, http.StatusOK, page)
		}
		page.View, page.Client, page.Thing, page.Scopes = "consent", dc.clientID, dc.thingID, dc.scopes
		return s.renderDevice(w, http.StatusOK, page)
	}
	if !s.decideDevice(realm, page.UserCode, ss.uid, decision == "allow") {
		s.wrongUserCode(acct, src)
		// AM answers an unknown, expired or spent code alike: the verification
		// resource finds no pending device code and renders not_found.
		page.View, page.ErrorCode, page.Message = "code", "not_found", "That code is unknown, expired or already used."
		return s.renderDevice(w, http.StatusOK, page)
	}
	s.log.Info("device request decided", "user", ss.uid, "decision", decision)
	page.View, page.Done, page.Decision = "done", true, decision
	return s.renderDevice(w, http.StatusOK, page)
}

func (s *Server) deviceLogin(w http.ResponseWriter, r *http.Request, realm string, page devicePageData) error {
	c, err := r.Cookie(loginCSRFCookie)
	if err != nil || c.Value == "" || subtle.ConstantTimeCompare([]byte(c.Value), []byte(r.PostForm.Get("login_csrf"))) != 1 {
		return s.renderLogin(w, page, "The sign-in form expired; please try again.")
	}
	id, admin, err := s.checkLogin(r, realm, r.PostForm.Get("username"), r.PostForm.Get("password"))
	if err != nil {
		he, _ := err.(*httpError)
		if he == nil || he.status == http.StatusUnauthorized && he.retryAfter == "" {
			page.ErrorCode = "login_failure"
			return s.renderLogin(w, page, "Wrong user name or password.")
		}
		page.ErrorCode = "too_many_attempts"
		w.Header().Set("Retry-After", he.retryAfter)
		return s.renderLoginStatus(w, he.status, page, he.message+" Try again later.")
	}
	kind := kindUser
	if admin {
		kind = kindAdmin
	}
	ss := s.newSession(realm, id, kind, false, nil)
	http.SetCookie(w, s.cookie(s.settings.CookieName, ss.token, http.SameSiteLaxMode))
	gone := s.cookie(loginCSRFCookie, "", http.SameSiteStrictMode)
	gone.MaxAge = -1
	http.SetCookie(w, gone)
	target := page.Action
	if page.UserCode != "" {
		sep := "?"
		if strings.Contains(target, "?") {
			sep = "&"
		}
		target += sep + "user_code=" + url.QueryEscape(page.UserCode)
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
	return nil
}

func (s *Server) renderLogin(w http.ResponseWriter, page devicePageData, msg string) error {
	return s.renderLoginStatus(w, http.StatusOK, page, msg)
}

func (s *Server) renderLoginStatus(w http.ResponseWriter, status int, page devicePageData, msg string) error {
	token := randomToken(24)
	http.SetCookie(w, s.cookie(loginCSRFCookie, token, http.SameSiteStrictMode))
	page.View, page.LoginCSRF, page.Message = "login", token, msg
	return s.renderDevice(w, status, page)
}

func (s *Server) renderDevice(w http.ResponseWriter, status int, page devicePageData) error {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Frame-Options", "DENY")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; form-action 'self'")
	w.WriteHeader(status)
	if err := devicePage.Execute(w, page); err != nil {
		s.log.Warn("render device page", "err", err)
	}
	return nil
}

// wrongUserCode counts a user code that named no pending request against the
// signed-in user and the address: user codes are short, so guessing them must
// stay slow.
func (s *Server) wrongUserCode(acct, src string) {
	s.mu.Lock()
	s.userCodeGuard.fail(acct, src, s.now())
	s.mu.Unlock()
}
