package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// maxRounds bounds the callback exchange; AM's IoT trees need at most three rounds.
const maxRounds = 16

// Authenticate walks the authentication tree named tree: it posts {} to /json/authenticate, answers
// each round of callbacks with handlers and echoes them with the authId until AM issues an SSO token.
// Any non-200 reply is an authentication failure (errors.Is(err, ErrAuthenticationFailed)).
func (c *Client) Authenticate(ctx context.Context, tree string, handlers ...CallbackHandler) (*Session, error) {
	if tree == "" {
		return nil, errors.New("authenticate: tree name is empty")
	}
	url := c.ep.authenticate(tree)
	var payload authPayload
	for round := 0; round < maxRounds; round++ {
		body, err := json.Marshal(payload)
		if err != nil {
			return nil, fmt.Errorf("authenticate %s: encode: %w", tree, err)
		}
		status, reply, err := c.roundTrip(ctx, "authenticate", httpRequest{
			method: http.MethodPost, url: url, api: apiAuthenticate, contentType: contentJSON, body: body,
		})
		if err != nil {
			return nil, fmt.Errorf("authenticate %s: %w", tree, err)
		}
		if status != http.StatusOK {
			return nil, fmt.Errorf("authenticate %s: %w: %w", tree, ErrAuthenticationFailed, newAPIError("authenticate", status, reply))
		}
		var next authPayload
		if err := json.Unmarshal(reply, &next); err != nil {
			return nil, fmt.Errorf("authenticate %s: decode reply: %w", tree, err)
		}
		if next.TokenID != "" {
			key := proofKey(handlers, payload.answeredBy)
			s := newSession(c, next.TokenID, key)
			c.log.DebugContext(ctx, "authenticated", "tree", tree, "session", s.Fingerprint(), "pop", key != nil)
			return s, nil
		}
		if len(next.Callbacks) == 0 {
			return nil, fmt.Errorf("authenticate %s: %w: reply has neither tokenId nor callbacks", tree, ErrAuthenticationFailed)
		}
		answered, err := c.answer(next.Callbacks, handlers)
		if err != nil {
			return nil, fmt.Errorf("authenticate %s: %w", tree, err)
		}
		next.answeredBy = answered
		payload = next
	}
	return nil, fmt.Errorf("authenticate %s: %w: more than %d rounds", tree, ErrAuthenticationFailed, maxRounds)
}

// answer fills each callback with the first handler that claims it and returns, per callback, the
// index of that handler (-1 when none did).
func (c *Client) answer(cbs []Callback, handlers []CallbackHandler) ([]int, error) {
	tc := TreeContext{RealmPath: realmPath(c.realm), OAuthBaseURL: c.ep.oauthBase(), Now: time.Now()}
	answered := make([]int, len(cbs))
	for i := range cbs {
		answered[i] = -1
		for h, handler := range handlers {
			ok, err := handler.HandleCallback(tc, &cbs[i])
			if err != nil {
				return nil, fmt.Errorf("callback %s %q: %w", cbs[i].Type, cbs[i].ID(), err)
			}
			if ok {
				answered[i] = h
				break
			}
		}
	}
	return answered, nil
}

// proofKey returns the key of the first handler that answered a callback in the last round and holds
// a proof key: that makes the session a PoP session.
func proofKey(handlers []CallbackHandler, answered []int) *Key {
	for _, h := range answered {
		if h < 0 {
			continue
		}
		if holder, ok := handlers[h].(ProofKeyHolder); ok {
			if k := holder.ProofKey(); k != nil {
				return k
			}
		}
	}
	return nil
}
