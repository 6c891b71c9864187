// Package httpdoor is the broker's HTTPS door for things and cloud applications that cannot hold
// an MQTT connection: POST /topics/{topic} publishes the request body with the bearer token's
// identity, GET /topics/{filter} (Accept: text/event-stream) streams the matching messages as
// Server-Sent Events until the token expires or is revoked.
//
// The door decides nothing itself. Each request is relayed as the caller over an MQTT 5 connection
// made with its token (package imb/internal/asthing), so the broker's validation, identity
// binding, grants, limits and cluster forwarding apply unchanged; the MQTT 5 reason codes come back
// and map to HTTP statuses in one table (status.go). See docs/http.md.
package httpdoor
