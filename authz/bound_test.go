package authz

import "testing"

func TestBoundTokenRequired(t *testing.T) {
	src := `version: 1
rules:
  - name: fleet
    effect: allow
    actions: [subscribe]
    topics: ["things/+/state"]
    scopes: ["fleet:read"]
    require_bound_token: true
  - name: things
    effect: allow
    actions: [publish]
    topics: ["things/{sub}/telemetry"]
limits:
  - name: secure
    subjects: ["secure-*"]
    require_bound_token: true
  - name: quota
    subjects: ["quota-*"]
    sessions: 2
`
	p, err := Parse("p.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		s    Subject
		want string
	}{
		{"rule's scope", Subject{ID: "app", Scopes: []string{"fleet:read"}}, "rule p.yaml:3 (fleet)"},
		{"limit entry's subject", Subject{ID: "secure-1"}, "limit entry p.yaml:14 (secure)"},
		{"neither", Subject{ID: "thing-1", Scopes: []string{"publish"}}, ""},
		{"limit entry without the key", Subject{ID: "quota-1"}, ""},
		{"anonymous", Subject{Anonymous: true, Scopes: []string{"fleet:read"}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := p.BoundTokenRequired(tt.s); got != tt.want {
				t.Fatalf("BoundTokenRequired = %q, want %q", got, tt.want)
			}
		})
	}
}
