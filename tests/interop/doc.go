// Package interop tests imb against software it did not write: the Mosquitto
// command-line clients, MQTT.js, Eclipse Paho for Python, and node-oidc-provider as
// the authorization server. The tests start a real broker in-process on a loopback
// port and run each client as a subprocess that reports what it saw as JSON lines;
// they skip, saying how to install it, when a client is not installed.
//
// The package holds no code of its own beyond its tests; README.md lists every case.
package interop
