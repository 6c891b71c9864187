package amdev

import (
	"crypto/subtle"
	"errors"
	"html/template"
	"net/http"
	"strings"
)

// pairingsPage is the HTML of the paired-things page (§2.7): the signed-in user's pairings, each with a
// button that revokes it. Like the device page it embeds AM's pageData object ("done" after a revocation).
var pairingsPage = template.Must(template.New("pairings").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>amdev · Paired things</title>
<style>body{font-family:sans-serif;max-width:40em;margin:3em auto}label{display:block;margin:.6em 0}td,th{padding:.3em .8em;text-align:left}</style>
<script>var pageData = {{.PageData}};</script>
</head><body>
<h1>Paired things</h1>
{{if .Message}}<p role="alert">{{.Message}}</p>{{end}}
{{if eq .View "login"}}
<form method="post" action="{{.Action}}">
<p>Sign in to see the things paired with your account.</p>
<label>User name <input name="username" autocomplete="username" autofocus></label>
<label>Password <input name="password" type="password" autocomplete="current-password"></label>
<input type="hidden" name="login_csrf" value="{{.LoginCSRF}}">
<button type="submit">Sign in</button>
</form>
{{else}}
<p>Signed in as {{.User}}. These things act for you through a device authorization you approved. Revoking
one destroys its tokens at once; it must be paired again to act for you.</p>
{{if .Pairings}}
<table><thead><tr><th>Thing</th><th>Client</th><th>Scopes</th><th>Paired</th><th></th></tr></thead><tbody>
{{range .Pairings}}<tr><td>{{if .Thing}}{{.Thing}}{{else}}(device client){{end}}</td><td>{{.Client}}</td><td>{{range $i, $s := .Scopes}}{{if $i}} {{end}}{{$s}}{{end}}</td><td>{{.Created.Format "2006-01-02 15:04 MST"}}</td>
<td><form method="post" action="{{$.Action}}"><input type="hidden" name="csrf" value="{{$.CSRF}}"><input type="hidden" name="pairing" value="{{.ID}}"><button type="submit">Revoke</button></form></td></tr>
{{end}}</tbody></table>
{{else}}<p>No paired things.</p>{{end}}
{{end}}
</body></html>
`))

type pairingsPageData struct {
	devicePageData
	Pairings []pairing
}

// handlePairingsPage serves <realm's OAuth base>/device/pairings: sign in as on the device page, see the
// pairings, revoke one (POST pairing=ID with csrf = the SSO token, as every signed-in form of amdev).
func (s *Server) handlePairingsPage(w http.ResponseWriter, r *http.Request, realm string) error {
	if err := requireMethod(r, http.MethodGet, http.MethodPost); err != nil {
		return err
	}
	page := pairingsPageData{devicePageData: devicePageData{Action: r.URL.Path, Realm: realm}}
	ss := s.lookupSession(s.sessionToken(r))
	if ss != nil && (ss.realm != realm || ss.kind != kindUser) {
		ss = nil
	}
	if r.Method == http.MethodPost {
		if err := r.ParseForm(); err != nil {
			return errBadRequest("Invalid form body")
		}
		if r.PostForm.Has("username") {
			return s.deviceLogin(w, r, realm, page.devicePageData)
		}
	}
	if ss == nil {
		token := randomToken(24)
		http.SetCookie(w, s.cookie(loginCSRFCookie, token, http.SameSiteStrictMode))
		page.View, page.LoginCSRF = "login", token
		if r.Method == http.MethodPost {
			page.Message = "Please sign in."
		}
		return s.renderPairings(w, http.StatusOK, page)
	}
	page.View, page.User, page.CSRF = "list", ss.uid, ss.token
	status := http.StatusOK
	if r.Method == http.MethodPost {
		switch p, err := s.pairingFormRevoke(r, realm, ss); {
		case errors.Is(err, errCSRF):
			page.ErrorCode, page.Message, status = "csrf", "The form is stale or forged; reload the page.", http.StatusForbidden
		case errors.Is(err, errNoPairing):
			page.ErrorCode, page.Message = "not_found", "That pairing is unknown or already revoked."
		case err != nil:
			return err
		default:
			name := p.Thing
			if name == "" {
				name = p.Client
			}
			page.Done, page.Message = true, "Revoked the pairing with "+name+"."
		}
	}
	list, err := s.pairingsOf(realm, ss.uid)
	if err != nil {
		return err
	}
	page.Pairings = list
	return s.renderPairings(w, status, page)
}

var errCSRF = errors.New("csrf token mismatch")

func (s *Server) pairingFormRevoke(r *http.Request, realm string, ss *session) (pairing, error) {
	if subtle.ConstantTimeCompare([]byte(r.PostForm.Get("csrf")), []byte(ss.token)) != 1 {
		return pairing{}, errCSRF
	}
	id := strings.TrimSpace(r.PostForm.Get("pairing"))
	if id == "" {
		return pairing{}, errNoPairing
	}
	return s.revokePairing(realm, ss.uid, id, "", "pairing revoked by "+ss.uid)
}

func (s *Server) renderPairings(w http.ResponseWriter, status int, page pairingsPageData) error {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Frame-Options", "DENY")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; form-action 'self'")
	w.WriteHeader(status)
	if err := pairingsPage.Execute(w, page); err != nil {
		s.log.Warn("render pairings page", "err", err)
	}
	return nil
}
