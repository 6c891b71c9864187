package claimpath

import (
	"encoding/json"
	"reflect"
	"testing"
)

func TestLookup(t *testing.T) {
	var claims map[string]any
	err := json.Unmarshal([]byte(`{
		"sub": "t1",
		"cognito:groups": ["plant-a"],
		"https://example.com/roles": ["writer"],
		"flat.name": "flat",
		"realm_access": {"roles": ["publisher", "offline_access"]},
		"resource_access": {"mqtt-broker": {"roles": ["subscriber"]}, "x.y": {"roles": ["dotted"]}},
		"nothing": null,
		"str": "s"
	}`), &claims)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path string
		want any
		ok   bool
	}{
		{"sub", "t1", true},
		{"cognito:groups", []any{"plant-a"}, true},
		{"https://example.com/roles", []any{"writer"}, true},
		{"flat.name", "flat", true},
		{"realm_access.roles", []any{"publisher", "offline_access"}, true},
		{"resource_access.mqtt-broker.roles", []any{"subscriber"}, true},
		{"resource_access.x.y.roles", []any{"dotted"}, true},
		{"resource_access.other.roles", nil, false},
		{"realm_access", map[string]any{"roles": []any{"publisher", "offline_access"}}, true},
		{"str.deeper", nil, false},
		{"nothing", nil, false},
		{"nothing.x", nil, false},
		{"absent", nil, false},
		{"", nil, false},
	}
	for _, tt := range tests {
		got, ok := Lookup(claims, tt.path)
		if ok != tt.ok || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Lookup(%q) = %v, %v; want %v, %v", tt.path, got, ok, tt.want, tt.ok)
		}
	}
}
