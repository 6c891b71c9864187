// Package gateway is imb's IoT Gateway: a CoAP-over-DTLS front end that lets constrained things reach
// AM's IoT endpoints through it, wire-compatible with ForgeRock's IoT Gateway (iot-edge
// internal/gateway). Each request is relayed to AM with the thing's own session token; the gateway
// itself is a registered thing of type gateway but never lends its session to a thing.
//
// Routes (am-protocol.md §13): POST /authenticate (2.03 or 4.01), GET /aminfo (2.05), POST
// /accesstoken /usercode /usertoken /introspect /attributes (2.04), POST /session?_action=validate|logout
// (2.04, invalid session 4.01). AM's HTTP errors map to CoAP codes with the fixed table in codes.go;
// AM unreachable is 5.03.
package gateway
