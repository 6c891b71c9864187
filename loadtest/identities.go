package main

import (
	"fmt"
	"net"
	"slices"
	"time"

	"imb/internal/issuer"
)

// Identities: things publish their own telemetry and subscribe their own
// commands (scopes publish, subscribe); cloud application workers read every
// thing's telemetry (scope fleet:read). Client ids equal the token subjects, as
// imb's default binding requires.
func thingID(i int) string { return fmt.Sprintf("lt-d%d", i) }
func appID(i int) string   { return fmt.Sprintf("lt-app%d", i) }

func telemetryTopic(thing string) string { return "things/" + thing + "/telemetry/x" }

// Every target gets the same token per identity: imb reads the first scopes,
// RabbitMQ's OAuth2 backend the rabbitmqScopes and the topic scopes of the subject
// (it ignores scopes without its resource prefix, and imb's policy ignores those
// it has no rule for).
var (
	thingScopes = append([]string{"publish", "subscribe"}, rabbitmqScopes...)
	appScopes   = append([]string{"fleet:read"}, rabbitmqScopes...)
)

// tokenTTL outlives any run.
const tokenTTL = 2 * time.Hour

// tokens are the credentials of one run's identities: one distinct token per
// simulated client, ES256 JWTs and opaque tokens for the same subjects.
type tokens struct {
	jwt, opaque map[string]string
}

// mintTokens mints a JWT and an opaque token for each subject.
func mintTokens(iss *issuer.Issuer, things, apps int) tokens {
	t := tokens{jwt: map[string]string{}, opaque: map[string]string{}}
	add := func(sub string, scopes []string) {
		scopes = append(slices.Clone(scopes), rabbitmqTopicScopes(sub, slices.Contains(scopes, "fleet:read"))...)
		c := issuer.Claims{"sub": sub, "scope": scopes}
		t.jwt[sub] = iss.Mint(c, tokenTTL)
		t.opaque[sub] = iss.MintOpaque(c, tokenTTL)
	}
	for i := range things {
		add(thingID(i), thingScopes)
	}
	for i := range apps {
		add(appID(i), appScopes)
	}
	add(floodID, thingScopes) // the noisy-neighbour scenario's flooder; unused elsewhere
	return t
}

// forTarget is the token map a target's clients present.
func (t tokens) forTarget(target string) map[string]string {
	if usesOpaqueTokens(target) {
		return t.opaque
	}
	return t.jwt
}

// sourceIP spreads client connections over 127.0.0.1 to 127.0.0.64 when the
// broker is on 127.0.0.1: each source address has its own ephemeral port range, so
// tens of thousands of connections (and the TIME_WAIT they leave) never run out
// of ports. For other brokers the kernel chooses.
func sourceIP(brokerAddr string, i int) net.IP {
	host, _, err := net.SplitHostPort(brokerAddr)
	if err != nil || host != "127.0.0.1" {
		return nil
	}
	return net.IPv4(127, 0, 0, byte(1+i%64))
}
