package broker

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"imb/authz"
)

// LoadConfigFile reads an imb.yaml file into cfg, over the values cfg holds. See
// DecodeConfig for what is checked.
func LoadConfigFile(path string, cfg *Config) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return &ConfigError{Err: fmt.Errorf("config: %w", err)}
	}
	return DecodeConfig(path, data, cfg)
}

// DecodeConfig reads imb.yaml text into cfg, over the values cfg holds. Every
// problem is reported at once, each as FILE:LINE:COL: message (an
// authz.ErrorList inside a ConfigError), the way policy errors are: an unknown
// key with the nearest known one, a key given twice, a value of the wrong kind.
// A single string is accepted where a list is expected (audience: x).
func DecodeConfig(filename string, data []byte, cfg *Config) error {
	var errs authz.ErrorList
	add := func(n *yaml.Node, format string, args ...any) {
		errs = append(errs, &authz.PositionError{File: filename, Line: max(n.Line, 1), Col: max(n.Column, 1),
			Msg: fmt.Sprintf(format, args...)})
	}
	var doc yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(data)).Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil // an empty file keeps every default
		}
		line, msg := 1, strings.TrimPrefix(err.Error(), "yaml: ")
		if _, e := fmt.Sscanf(msg, "line %d:", &line); e == nil {
			_, msg, _ = strings.Cut(msg, ": ")
		}
		errs = append(errs, &authz.PositionError{File: filename, Line: line, Col: 1, Msg: "invalid YAML: " + msg})
		return &ConfigError{Err: errs}
	}
	if len(doc.Content) == 0 {
		return nil
	}
	top := doc.Content[0]
	if top.Kind == yaml.ScalarNode && top.Tag == "!!null" {
		return nil
	}
	if top.Kind != yaml.MappingNode {
		add(top, "imb.yaml must be a mapping of key: value")
		return &ConfigError{Err: errs}
	}
	fields := configFields()
	rv := reflect.ValueOf(cfg).Elem()
	seen := map[string]int{}
	for i := 0; i+1 < len(top.Content); i += 2 {
		k, v := top.Content[i], top.Content[i+1]
		idx, known := fields[k.Value]
		switch {
		case k.Kind != yaml.ScalarNode:
			add(k, "keys must be plain names")
			continue
		case !known:
			if near := nearestKey(k.Value, fields); near != "" {
				add(k, "unknown key %q (did you mean %q?)", k.Value, near)
			} else {
				add(k, "unknown key %q (docs/configuration.md lists every key)", k.Value)
			}
			continue
		}
		f := rv.Field(idx)
		if f.Kind() == reflect.Slice && v.Kind == yaml.ScalarNode && v.Tag != "!!null" {
			v = &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Line: v.Line, Column: v.Column, Content: []*yaml.Node{v}}
		}
		if f.Kind() == reflect.Struct && v.Kind == yaml.MappingNode {
			checkSection(k.Value, v, f.Type(), add)
		}
		target := reflect.New(f.Type())
		if err := v.Decode(target.Interface()); err != nil {
			add(v, "%s: want %s, not %s", k.Value, kindName(f.Type()), describeNode(v))
		}
		if line, dup := seen[k.Value]; dup {
			add(k, "key %q given twice (first on line %d)", k.Value, line)
			continue
		}
		seen[k.Value] = k.Line
		f.Set(target.Elem())
		if k.Value == "ssf" {
			checkSSF(v, cfg.SSF, add)
		}
	}
	if len(errs) > 0 {
		return &ConfigError{Err: errs}
	}
	return nil
}

// checkSection reports the keys of a section (such as cluster:) that its struct
// does not have, with their lines, as unknown top-level keys are.
func checkSection(name string, v *yaml.Node, t reflect.Type, add func(*yaml.Node, string, ...any)) {
	known := map[string]bool{}
	for i := range t.NumField() {
		if tag, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ","); tag != "" && tag != "-" {
			known[tag] = true
		}
	}
	for i := 0; i+1 < len(v.Content); i += 2 {
		if k := v.Content[i]; !known[k.Value] {
			add(k, "unknown key %q in %s: (docs/configuration.md lists every key)", k.Value, name)
		}
	}
}

// checkSSF reports what an ssf: section lacks at the line of the key concerned (the section's when it is absent).
func checkSSF(v *yaml.Node, c SSFConfig, add func(*yaml.Node, string, ...any)) {
	key, err := c.check()
	if err == nil {
		return
	}
	at := v
	for i := 0; i+1 < len(v.Content); i += 2 {
		if v.Content[i].Value == key {
			at = v.Content[i+1]
		}
	}
	add(at, "%v", err)
}

// configFields maps each imb.yaml key to its Config field index.
func configFields() map[string]int {
	out := map[string]int{}
	ct := reflect.TypeFor[Config]()
	for i := range ct.NumField() {
		tag, _, _ := strings.Cut(ct.Field(i).Tag.Get("yaml"), ",")
		if tag != "" && tag != "-" {
			out[tag] = i
		}
	}
	return out
}

// kindName says in words what a field's value must be.
func kindName(t reflect.Type) string {
	switch {
	case t == reflect.TypeFor[time.Duration]():
		return "a duration such as 30s or 5m"
	case t.Kind() == reflect.Bool:
		return "true or false"
	case t.Kind() == reflect.String:
		return "a string"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64:
		return "a whole number"
	case t.Kind() == reflect.Slice:
		return "a list of strings (or one string)"
	}
	return t.String()
}

// describeNode names what was written instead.
func describeNode(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	}
	return fmt.Sprintf("%q", n.Value)
}

// nearestKey is the known key closest to a misspelt one, if it is close enough
// to be what was meant (at most a third of its letters differ).
func nearestKey(key string, fields map[string]int) string {
	best, bestD := "", len(key)/3+1
	for k := range fields {
		if d := editDistance(key, k); d < bestD || (d == bestD && best != "" && k < best) {
			best, bestD = k, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance of two strings.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}
