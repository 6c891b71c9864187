package broker

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"imb/authz"
)

func TestDecodeConfig(t *testing.T) {
	for _, tc := range []struct {
		name  string
		text  string
		errs  []string // every error line, in order; none: it decodes
		check func(t *testing.T, c Config)
	}{
		{name: "empty file keeps the defaults", text: "", check: func(t *testing.T, c Config) {
			if c.MQTTAddr != "127.0.0.1:1883" {
				t.Errorf("mqtt_addr %q", c.MQTTAddr)
			}
		}},
		{name: "comments only", text: "# nothing\n"},
		{name: "values", text: "mqtt_addr: 0.0.0.0:1883\nrevalidate_interval: 30s\naudience: [a, b]\nrequire_username: true\nmax_clients: 5\n",
			check: func(t *testing.T, c Config) {
				if c.MQTTAddr != "0.0.0.0:1883" || c.RevalidateInterval != 30*time.Second || !slices.Equal(c.Audience, []string{"a", "b"}) ||
					!c.RequireUsername || c.MaxClients != 5 {
					t.Errorf("decoded %+v", c)
				}
			}},
		{name: "a string is a list of one", text: "audience: cloud-app\nws_origins: https://app.example\n", check: func(t *testing.T, c Config) {
			if !slices.Equal(c.Audience, []string{"cloud-app"}) || !slices.Equal(c.WSOrigins, []string{"https://app.example"}) {
				t.Errorf("audience %q, ws_origins %q", c.Audience, c.WSOrigins)
			}
		}},
		{name: "null list", text: "audience:\n", check: func(t *testing.T, c Config) {
			if len(c.Audience) != 0 {
				t.Errorf("audience %q", c.Audience)
			}
		}},
		{name: "misspelt key", text: "issuer: x\nmqtt_adr: 127.0.0.1:1883\n", errs: []string{`imb.yaml:2:1: unknown key "mqtt_adr" (did you mean "mqtt_addr"?)`}},
		{name: "unknown key far from any", text: "colour: blue\n", errs: []string{`imb.yaml:1:1: unknown key "colour" (docs/configuration.md lists every key)`}},
		{name: "every error at once", text: "revalidate_interval: soon\nmax_clients: many\ndata_fsync: perhaps\naudience: {a: 1}\npolcy: x.yaml\n", errs: []string{
			`imb.yaml:1:22: revalidate_interval: want a duration such as 30s or 5m, not "soon"`,
			`imb.yaml:2:14: max_clients: want a whole number, not "many"`,
			`imb.yaml:3:13: data_fsync: want true or false, not "perhaps"`,
			`imb.yaml:4:11: audience: want a list of strings (or one string), not a mapping`,
			`imb.yaml:5:1: unknown key "polcy" (did you mean "policy"?)`,
		}},
		{name: "ssf section", text: "admin_scope: imb:admin\nssf:\n  issuer: https://tx\n  jwks_url: https://tx/jwks\n  audience: imb\n  max_age: 2m\n",
			check: func(t *testing.T, c Config) {
				if c.AdminScope != "imb:admin" || c.SSF != (SSFConfig{Issuer: "https://tx", JWKSURL: "https://tx/jwks", Audience: "imb", MaxAge: 2 * time.Minute}) {
					t.Errorf("decoded %+v %+v", c.AdminScope, c.SSF)
				}
			}},
		{name: "ssf without audience", text: "ssf:\n  issuer: https://tx\n  jwks_url: https://tx/jwks\n", errs: []string{
			`imb.yaml:2:3: ssf: audience is required: this broker as the transmitter names it in aud`}},
		{name: "ssf with two key sources", text: "ssf:\n  issuer: https://tx\n  audience: imb\n  jwks_url: https://tx/jwks\n  jwks_file: k.json\n", errs: []string{
			`imb.yaml:4:13: ssf: give jwks_url or jwks_file (one): the transmitter's signing keys`}},
		{name: "ssf jwks_url not a URL", text: "ssf:\n  issuer: https://tx\n  audience: imb\n  jwks_url: tx/jwks\n", errs: []string{
			`imb.yaml:4:13: ssf: jwks_url "tx/jwks": want an absolute http or https URL`}},
		{name: "ssf unknown key", text: "ssf:\n  issuer: https://tx\n  audiance: imb\n", errs: []string{
			`imb.yaml:3:3: unknown key "audiance" in ssf: (docs/configuration.md lists every key)`,
			`imb.yaml:2:3: ssf: audience is required: this broker as the transmitter names it in aud`}},
		{name: "key given twice", text: "policy: a.yaml\npolicy: b.yaml\n", errs: []string{`imb.yaml:2:1: key "policy" given twice (first on line 1)`}},
		{name: "not a mapping", text: "- a\n- b\n", errs: []string{`imb.yaml:1:1: imb.yaml must be a mapping of key: value`}},
		{name: "invalid YAML", text: "mqtt_addr: [\n", errs: []string{"imb.yaml:1:1: invalid YAML: did not find expected node content"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Defaults()
			err := DecodeConfig("imb.yaml", []byte(tc.text), &cfg)
			if len(tc.errs) == 0 {
				if err != nil {
					t.Fatalf("error: %v", err)
				}
				if tc.check != nil {
					tc.check(t, cfg)
				}
				return
			}
			if !IsConfigError(err) {
				t.Fatalf("error %v is not a configuration error", err)
			}
			var list authz.ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("error %v is not positioned", err)
			}
			if got := strings.Split(list.Error(), "\n"); !slices.Equal(got, tc.errs) {
				t.Errorf("errors\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tc.errs, "\n"))
			}
		})
	}
}
