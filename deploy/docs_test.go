package deploy

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"imb/broker"
)

const configDoc = "docs/configuration.md"

// docRow is one key of the configuration reference.
type docRow struct {
	line               int
	key, def, flagCell string
}

var backticked = regexp.MustCompile("`([^`]*)`")

// readKeyTables collects the rows of the reference's key tables: a first cell
// holding a `key` in lower case.
func readKeyTables(t *testing.T) map[string]docRow {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, configDoc))
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]docRow{}
	for i, line := range strings.Split(string(data), "\n") {
		cells := strings.Split(strings.Trim(line, "| "), " | ")
		if !strings.HasPrefix(line, "| `") || len(cells) != 4 {
			continue
		}
		key := strings.Trim(cells[0], "`")
		if strings.HasPrefix(key, "--") {
			continue // the table of flags without a key
		}
		m := backticked.FindStringSubmatch(cells[1])
		if m == nil {
			t.Errorf("%s:%d: default of %s is not a `value`", configDoc, i+1, key)
			continue
		}
		if prev, dup := rows[key]; dup {
			t.Errorf("%s:%d: %s already documented on line %d", configDoc, i+1, key, prev.line)
		}
		rows[key] = docRow{line: i + 1, key: key, def: m[1], flagCell: cells[2]}
	}
	return rows
}

// yamlFields maps each imb.yaml key to its broker.Config field index path. A
// section (a struct field such as cluster:) contributes its keys as section.key.
func yamlFields() map[string][]int {
	out := map[string][]int{}
	ct := reflect.TypeFor[broker.Config]()
	for i := range ct.NumField() {
		tag, _, _ := strings.Cut(ct.Field(i).Tag.Get("yaml"), ",")
		if tag == "" || tag == "-" {
			continue
		}
		if st := ct.Field(i).Type; st.Kind() == reflect.Struct && st != reflect.TypeFor[time.Duration]() {
			for j := range st.NumField() {
				sub, _, _ := strings.Cut(st.Field(j).Tag.Get("yaml"), ",")
				if sub != "" && sub != "-" {
					out[tag+"."+sub] = []int{i, j}
				}
			}
			continue
		}
		out[tag] = []int{i}
	}
	return out
}

// decodeKey reads `key: value` the way imb.yaml is read and returns the field; a
// section.key is written as the section's mapping.
func decodeKey(key, val string, field []int) (reflect.Value, error) {
	var cfg broker.Config
	text := key + ": " + val + "\n"
	if section, sub, ok := strings.Cut(key, "."); ok {
		text = section + ":\n  " + sub + ": " + val + "\n"
	}
	if err := broker.DecodeConfig("imb.yaml", []byte(text), &cfg); err != nil {
		return reflect.Value{}, err
	}
	return reflect.ValueOf(cfg).FieldByIndex(field), nil
}

// sameValue compares config values, an empty list equal to none.
func sameValue(a, b reflect.Value) bool {
	if a.Kind() == reflect.Slice && a.Len() == 0 && b.Len() == 0 {
		return true
	}
	return reflect.DeepEqual(a.Interface(), b.Interface())
}

// TestConfigurationReference checks docs/configuration.md against the code: every
// imb.yaml key (broker.Config's yaml tags) is documented once, with the default
// broker.Defaults() really has, and with the imb serve flag that overrides it; every
// flag of imb serve is documented.
func TestConfigurationReference(t *testing.T) {
	rows := readKeyTables(t)
	fields := yamlFields()
	defaults := reflect.ValueOf(broker.Defaults())
	serve := imb.flags["serve"]
	documentedFlags := map[string]bool{}

	for key, field := range fields {
		row, ok := rows[key]
		if !ok {
			t.Errorf("imb.yaml key %s is not documented in %s", key, configDoc)
			continue
		}
		got, err := decodeKey(key, row.def, field)
		if err != nil {
			t.Errorf("%s:%d: default %q of %s does not read as imb.yaml: %v", configDoc, row.line, row.def, key, err)
			continue
		}
		if want := defaults.FieldByIndex(field); !sameValue(got, want) {
			t.Errorf("%s:%d: %s default documented as %q, but it is %v", configDoc, row.line, key, row.def, want.Interface())
		}
		if row.flagCell == "—" {
			continue
		}
		m := regexp.MustCompile("^`--([a-z-]+)`").FindStringSubmatch(row.flagCell)
		if m == nil {
			t.Errorf("%s:%d: flag cell %q of %s: want `--flag` or —", configDoc, row.line, row.flagCell, key)
			continue
		}
		flag := m[1]
		documentedFlags[flag] = true
		if _, ok := serve.takesValue[flag]; !ok {
			t.Errorf("%s:%d: %s: imb serve has no flag --%s", configDoc, row.line, key, flag)
			continue
		}
		// The flag's own default (from --help) must be the key's default too.
		if hd, ok := serve.defaults[flag]; ok {
			if v, err := decodeKey(key, hd, field); err != nil || !sameValue(v, defaults.FieldByIndex(field)) {
				t.Errorf("imb serve --%s defaults to %q, which is not %s's default", flag, hd, key)
			}
		}
	}
	for key, row := range rows {
		if _, ok := fields[key]; !ok {
			t.Errorf("%s:%d: %s is not an imb.yaml key", configDoc, row.line, key)
		}
	}
	doc, err := os.ReadFile(filepath.Join(repoRoot, configDoc))
	if err != nil {
		t.Fatal(err)
	}
	for flag := range serve.takesValue {
		dashes := "--"
		if len(flag) == 1 {
			dashes = "-" // one-letter flags are written -v, as the help shows them
		}
		if !documentedFlags[flag] && !strings.Contains(string(doc), "`"+dashes+flag) {
			t.Errorf("imb serve --%s is not documented in %s", flag, configDoc)
		}
	}
}

const amDoc = "docs/am-setup.md"

// sourceText is the non-test Go source of the packages whose log lines and
// reasons the AM guide quotes.
func sourceText(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	for _, dir := range []string{"hooks", "introspect", "authz"} {
		files, err := filepath.Glob(filepath.Join(repoRoot, dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			b.Write(data)
		}
	}
	return b.String()
}

// TestAMGuide checks docs/am-setup.md against the code: its imb.yaml examples read
// as imb.yaml, and the audit events and refusal reasons of its troubleshooting
// table are ones imb writes.
func TestAMGuide(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot, amDoc))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(data)

	blocks := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(doc, -1)
	if len(blocks) == 0 {
		t.Fatalf("%s has no imb.yaml example", amDoc)
	}
	for i, b := range blocks {
		cfg := broker.Defaults()
		dec := yaml.NewDecoder(strings.NewReader(b[1]))
		dec.KnownFields(true)
		if err := dec.Decode(&cfg); err != nil {
			t.Errorf("%s: yaml example %d does not read as imb.yaml: %v", amDoc, i+1, err)
		}
	}

	src := sourceText(t)
	quotes := regexp.MustCompile("reason `([^`]+)`|event=([a-z_]+)").FindAllStringSubmatch(doc, -1)
	if len(quotes) < 20 {
		t.Fatalf("%s quotes %d reasons and events; the troubleshooting table has more", amDoc, len(quotes))
	}
	for _, m := range quotes {
		// "will not allowed: …" is followed by the policy's reason, and "…; use
		// OAUTH2-JWT" by the method's constant: the source holds the prefix.
		quoted := strings.TrimSuffix(strings.TrimSuffix(m[1]+m[2], "…"), "OAUTH2-JWT")
		if !strings.Contains(src, `"`+quoted) {
			t.Errorf("%s quotes %q, which imb does not write", amDoc, quoted)
		}
	}
	for _, event := range []string{"connect", "connect_refused", "deny", "disconnect", "reauth_refused", "session_discarded"} {
		if !strings.Contains(doc, "`"+event+"`") && !strings.Contains(doc, "event="+event) {
			t.Errorf("%s does not explain audit event %s", amDoc, event)
		}
	}
}
