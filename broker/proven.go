package broker

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"

	"imb/hooks"
)

// Proven tells the identity hook what the client proved below MQTT: the thumbprint of its TLS client certificate
// (RFC 8705 certificate-bound tokens), or, for a connection of the HTTP door, what the HTTP request proved (its
// DPoP key, its client certificate). mochi has completed the TLS handshake by the time it has read CONNECT.
func (c *servedConn) Proven() hooks.Proven {
	switch conn := c.Conn.(type) {
	case *tls.Conn:
		return hooks.Proven{X5TS256: certThumbprint(conn.ConnectionState())}
	case hooks.ProofSource:
		return conn.Proven()
	}
	return hooks.Proven{}
}

// certThumbprint is the base64url SHA-256 of the client's leaf certificate (cnf "x5t#S256"), or "" without one.
func certThumbprint(cs tls.ConnectionState) string {
	if len(cs.PeerCertificates) == 0 {
		return ""
	}
	sum := sha256.Sum256(cs.PeerCertificates[0].Raw)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// Proven is what the door's request proved (hooks.WithProven on the dial's context).
func (c remoteConn) Proven() hooks.Proven { return c.proven }
