package broker

import (
	"crypto/subtle"
	"html/template"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"imb/authz"
	"imb/hooks"
)

// denialRing keeps the most recent denials for the status page: bounded, so that a
// client hammering a denied topic costs a fixed amount of memory (the hook's audit
// rate limit already thins what reaches it).
type denialRing struct {
	mu   sync.Mutex
	buf  []hooks.Denial
	next int
	full bool
}

const recentDenials = 100

func newDenialRing(n int) *denialRing { return &denialRing{buf: make([]hooks.Denial, n)} }

func (r *denialRing) add(d hooks.Denial) {
	r.mu.Lock()
	r.buf[r.next] = d
	r.next = (r.next + 1) % len(r.buf)
	if r.next == 0 {
		r.full = true
	}
	r.mu.Unlock()
}

// recent returns the denials kept, newest first.
func (r *denialRing) recent() []hooks.Denial {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := slices.Clone(r.buf[:r.next])
	if r.full {
		out = append(slices.Clone(r.buf[r.next:]), out...)
	}
	slices.Reverse(out)
	return out
}

// statusAccess decides who may read the status page, which shows identities,
// grants and denied topics (never tokens). The other admin endpoints stay open as
// before: probes and Prometheus scrapers carry no credentials.
//
//   - with admin_token set: only requests presenting it, as a bearer token or as
//     the password of HTTP basic authentication (any user name; browsers ask);
//   - without it, on a loopback admin_addr: requests whose Host is a loopback
//     name, so that a web page in the operator's browser cannot read it through
//     DNS rebinding;
//   - without it, anywhere else: nobody.
type statusAccess struct {
	token    string
	loopback bool
}

func newStatusAccess(cfg Config) statusAccess {
	host, _, err := net.SplitHostPort(cfg.AdminAddr)
	return statusAccess{token: cfg.AdminToken, loopback: err == nil && isLoopbackHost(host)}
}

func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// check returns 0 when r may read the page, else the HTTP status and why.
func (a statusAccess) check(r *http.Request) (int, string) {
	if a.token != "" {
		got, ok := bearer(r)
		if !ok {
			_, got, ok = r.BasicAuth()
		}
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(a.token)) != 1 {
			return http.StatusUnauthorized, "the status page needs the admin token (bearer, or basic authentication password)"
		}
		return 0, ""
	}
	if !a.loopback {
		return http.StatusForbidden, "the status page is off: admin_addr is not a loopback address and no admin_token is set"
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if !isLoopbackHost(host) {
		return http.StatusForbidden, "the status page answers only requests for a loopback host name when no admin_token is set"
	}
	return 0, ""
}

func bearer(r *http.Request) (string, bool) {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	return tok, true
}

// statusPage is what the template renders.
type statusPage struct {
	Now       time.Time
	Listeners map[string]string
	Policy    string // summary line; empty in the allow-all baseline
	AllowAll  bool
	Things    []thingRow
	Denials   []hooks.Denial
	// Cluster nodes belong here once brokers form a cluster; a broker runs alone.
}

type thingRow struct {
	hooks.Connection
	Grants []*authz.Rule
}

// ExpiresIn is the time left on the thing's token, rounded to the second.
func (t thingRow) ExpiresIn(now time.Time) string {
	if t.Expiry.IsZero() {
		return "never"
	}
	return t.Expiry.Sub(now).Round(time.Second).String()
}

func (b *Broker) statusPage() statusPage {
	p := statusPage{Now: time.Now().UTC(), Listeners: b.addrs, AllowAll: b.hook == nil}
	if b.hook == nil {
		return p
	}
	policy := b.hook.Policy()
	p.Policy = policy.Summary()
	for _, c := range b.hook.Connected() {
		row := thingRow{Connection: c}
		for _, r := range policy.Rules() {
			if r.AppliesTo(c.Subject) {
				row.Grants = append(row.Grants, r)
			}
		}
		p.Things = append(p.Things, row)
	}
	slices.SortFunc(p.Things, func(x, y thingRow) int {
		return strings.Compare(x.Subject.ID+"\x00"+x.Subject.ClientID, y.Subject.ID+"\x00"+y.Subject.ClientID)
	})
	if b.denials != nil {
		p.Denials = b.denials.recent()
	}
	return p
}

// serveStatus renders the page. html/template escapes every value by its context:
// thing ids, client ids and topics come from clients and may hold markup.
func (b *Broker) serveStatus(access statusAccess) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'")
		if code, why := access.check(r); code != 0 {
			if code == http.StatusUnauthorized {
				h.Set("WWW-Authenticate", `Basic realm="imb admin", charset="UTF-8"`)
			}
			http.Error(w, why, code)
			return
		}
		h.Set("Content-Type", "text/html; charset=utf-8")
		if err := statusTemplate.Execute(w, b.statusPage()); err != nil {
			b.log.Debug("status page", "error", err)
		}
	}
}

var statusTemplate = template.Must(template.New("status").Funcs(template.FuncMap{
	"stamp": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05Z") },
	"actions": func(as []authz.Action) string {
		s := make([]string, len(as))
		for i, a := range as {
			s[i] = a.String()
		}
		return strings.Join(s, ", ")
	},
}).Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="10">
<title>imb status</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.6em}
table{border-collapse:collapse;width:100%}th,td{border:1px solid #ccc;padding:.3em .5em;text-align:left;vertical-align:top}
th{background:#f3f3f3}code{font:12px ui-monospace,monospace}.deny{color:#a00}.allow{color:#070}.muted{color:#777}
ul{margin:0;padding-left:1.1em}
</style></head><body>
<h1>imb status</h1>
<p class="muted">as of {{stamp .Now}} · refreshes every 10 s · listeners:{{range $k, $v := .Listeners}} {{$k}} <code>{{$v}}</code>{{end}}</p>

<h2>Policy</h2>
{{if .AllowAll}}<p class="deny" id="policy">allow-all baseline: no authentication, no authorization</p>
{{else}}<p id="policy"><code>{{.Policy}}</code></p>{{end}}

<h2>Connected things ({{len .Things}})</h2>
{{if .Things}}<table id="things"><tr><th>Thing</th><th>Client id</th><th>Remote</th><th>Token</th><th>Expires</th><th>Grants (rules that apply)</th></tr>
{{range .Things}}<tr>
<td class="thing"><code>{{if .Subject.Anonymous}}(anonymous){{else}}{{.Subject.ID}}{{end}}</code></td>
<td><code>{{.Subject.ClientID}}</code></td>
<td><code>{{.Remote}}</code></td>
<td>{{.Method}} · MQTT {{if eq .Protocol 5}}5{{else}}3.1.1{{end}}</td>
<td>{{if .Expiry.IsZero}}never{{else}}{{stamp .Expiry}} (in {{.ExpiresIn $.Now}}){{end}}</td>
<td>{{if .Grants}}<ul>{{range .Grants}}<li><span class="{{.Effect}}">{{.Effect}}</span> {{actions .Actions}} {{range .Topics}}<code>{{.}}</code> {{end}}<span class="muted">{{.String}}</span></li>{{end}}</ul>{{else}}<span class="muted">none</span>{{end}}
{{range .Skipped}}<div class="deny">{{.String}}</div>{{end}}</td>
</tr>{{end}}</table>
{{else}}<p class="muted">none</p>{{end}}

<h2>Recent denials ({{len .Denials}}, newest first)</h2>
{{if .Denials}}<table id="denials"><tr><th>Time</th><th>Thing</th><th>Client id</th><th>Action</th><th>Topic</th><th>Deciding rule</th><th>Reason</th></tr>
{{range .Denials}}<tr><td>{{stamp .Time}}</td><td><code>{{.ThingID}}</code></td><td><code>{{.ClientID}}</code></td><td>{{.Action}}</td>
<td><code>{{.Topic}}</code></td><td>{{if .Rule}}{{.Rule}}{{else}}<span class="muted">—</span>{{end}}</td><td>{{.Reason}}</td></tr>{{end}}</table>
{{else}}<p class="muted">none</p>{{end}}

<h2>Cluster</h2>
<p class="muted" id="cluster">this broker runs alone</p>
</body></html>
`))
