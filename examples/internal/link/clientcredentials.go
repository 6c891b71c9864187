package link

import (
	"context"
	"fmt"
	"strings"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"imb/sdk"
)

// ClientCredentials is an sdk.TokenSource for an OAuth 2.0 client (a cloud application) that gets its
// tokens with the client credentials grant. Each call gets a fresh token: the MQTT dialer asks only
// when it connects and when the current token is due for renewal.
type ClientCredentials struct {
	Config clientcredentials.Config
}

// Token implements sdk.TokenSource.
func (c *ClientCredentials) Token(ctx context.Context) (*sdk.Token, error) {
	tok, err := c.Config.Token(ctx)
	if err != nil {
		return nil, fmt.Errorf("client credentials token for %s: %w", c.Config.ClientID, err)
	}
	t := &sdk.Token{AccessToken: tok.AccessToken, TokenType: tok.TokenType, Expiry: tok.Expiry, ExpiresIn: tok.ExpiresIn}
	if scope, ok := tok.Extra("scope").(string); ok {
		t.Scopes = strings.Fields(scope)
	}
	if t.ExpiresIn == 0 && !tok.Expiry.IsZero() {
		t.ExpiresIn = int64(time.Until(tok.Expiry).Round(time.Second) / time.Second)
	}
	return t, nil
}

// NewClientCredentials configures the grant at AM's token endpoint of baseURL (root realm).
func NewClientCredentials(baseURL, clientID, secret string, scopes []string) *ClientCredentials {
	return &ClientCredentials{Config: clientcredentials.Config{
		ClientID: clientID, ClientSecret: secret, Scopes: scopes,
		TokenURL: baseURL + "/oauth2/access_token", AuthStyle: oauth2.AuthStyleInHeader,
	}}
}
