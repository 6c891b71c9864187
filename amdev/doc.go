// Package amdev is imb's development identity server: an HTTP server that
// speaks ForgeRock Access Management's IoT protocol (the protocol notes in
// the project's spec, am-protocol.md) closely enough that ForgeRock's IoT SDK
// and imb's own SDK register, authenticate and obtain tokens against it
// unchanged.
//
// It serves, under a base URL such as http://127.0.0.1:8080/am:
//
//   - /json/serverinfo/*, /json/authenticate (trees and zero-page header login),
//     /json/sessions, /json/things/* and the admin identity REST
//     (/json/realms/root/users/{id});
//   - /oauth2 (and /oauth2/realms/root/realms/…): OIDC discovery, JWKS,
//     access_token, introspect, token/revoke, device/code and the HTML device
//     verification page device/user.
//
// Identities, the token signing and encryption keys and their secret
// mappings, the admin REST's configuration changes, refresh tokens, opaque
// tokens and revocations live in a bbolt store under Config.DataDir (or a temporary one
// with Config.InMemory); SSO sessions, authIds and device codes live in memory.
//
// For `imb dev` and tests, a Server also works in-process:
//
//	srv, err := amdev.Start(ctx, amdev.Config{Listen: "127.0.0.1:0", InMemory: true})
//	tok, err := srv.IssueAccessToken(ctx, amdev.DemoThingID, "", []string{"publish"})
//	app, err := srv.IssueClientToken(ctx, amdev.CloudAppClientID, nil)
//	broker, _ := srv.BrokerClient() // id and secret for srv.IntrospectionURL()
//
// Access tokens are ES256 JWTs by default (RS256, HS256, encrypted JWE or
// opaque per realm through the admin REST; typ JWT, kid of the key at
// srv.JWKSURL(), keys rotated through AM's secret mappings) with
// AM's claims: sub "(usr!id)" and subname, scope as an array, aud the client
// id, iss the realm's OAuth base URL; thing tokens also carry thingType, the
// claim an AM access-token modification script would add so that broker
// policies can condition on it.
//
// Defaults (DefaultSettings) follow the "Evaluate IoT" walk-through; a YAML
// file (Config.ConfigFile, see LoadSettings) overrides any part. The embedded
// key material in testdata/ is public test material, never for production.
package amdev
