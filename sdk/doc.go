// Package sdk is the client library a thing (a device, a service or a gateway) uses to register and
// authenticate with ForgeRock Access Management (AM) 7.x, or with imb's AM-compatible development server,
// and to obtain the OAuth 2.0 access tokens it presents to the imb MQTT broker.
//
// It speaks AM's IoT wire protocol: the callback exchange of an authentication tree over
// POST {base}/json/authenticate (proof-of-possession and client-assertion authentication; registration
// by proof of possession with a certificate, with a software statement, without trust, or by software
// statement alone), restricted SSO sessions whose every request body is a JWS signed with the thing's
// key, and the things endpoint {base}/json/things/* (access tokens, refresh, introspection, the device
// authorization grant and the thing's attributes).
//
// The usual sequence is:
//
//	client, _ := sdk.NewClient(ctx, sdk.Config{BaseURL: "http://127.0.0.1:8080/am", Realm: "/"})
//	key, _ := sdk.GenerateKey(sdk.ES256)
//	thing := client.NewThing("auth-reg-tree",
//		&sdk.Authenticator{ThingID: "thermostat-1", Key: key},
//		&sdk.Registrar{ThingID: "thermostat-1", Key: key, Certificates: certs})
//	tok, _ := thing.AccessToken(ctx, "publish")
//
// A TokenSource hides refresh from its callers; the dialer in package imb/sdk/mqtt pulls fresh tokens
// from one to connect to imb and to re-authenticate before a token expires.
//
// Every network call takes a context.Context and is bounded by Config.Timeout; errors are typed (see
// APIError and the Err* values) and never carry a token or key. JSON Web Signatures are built with
// go-jose, the project's library for AM's JWS formats.
package sdk
