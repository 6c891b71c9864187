package sdk

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// HTTPPublisher publishes through imb's HTTP door (POST /topics/{topic}, docs/http.md) with the
// access tokens of a TokenSource: for a thing that cannot hold an MQTT connection, such as a TV app
// that posts now and then with the user token it got through the device flow. The broker judges each
// message exactly as an MQTT publish with the same token. It is safe for concurrent use.
type HTTPPublisher struct {
	// BaseURL is the door, e.g. https://imb.example.com:8443.
	BaseURL string
	// Tokens supplies the bearer token of every request. When the door answers 401 invalid_token
	// and Tokens has a Reset method (ThingTokenSource, UserTokenSource), it is reset and the
	// publish tried once more with a new token.
	Tokens TokenSource
	// Client sends the requests (nil: a client with a 30-second timeout).
	Client *http.Client
}

// PublishOptions are the MQTT 5 settings of one HTTP publish; the zero value is QoS 1, not retained,
// no properties.
type PublishOptions struct {
	// AtMostOnce publishes at QoS 0: the door hands the message over without the broker's verdict
	// (202 Accepted), so a denied message is dropped silently.
	AtMostOnce      bool
	Retain          bool
	ContentType     string
	MessageExpiry   time.Duration // rounded down to whole seconds; 0: none
	ResponseTopic   string
	CorrelationData []byte
	UserProperties  [][2]string
}

// PublishError is the door's refusal of a publish: its HTTP status and the JSON body naming the
// reason. errors.Is matches ErrUnauthorized for 401 and ErrForbidden for 403.
type PublishError struct {
	StatusCode  int
	Code        string        // the door's reason name, e.g. not_authorized, message_rate_too_high
	ReasonCode  string        // the broker's MQTT 5 reason code, e.g. "0x87"; empty when the door refused
	Description string        // the door's sentence, with the broker's reason string
	RetryAfter  time.Duration // from Retry-After on 429 and 503; 0 without
}

// Error returns the status and the reason.
func (e *PublishError) Error() string {
	s := fmt.Sprintf("http publish: HTTP %d %s", e.StatusCode, e.Code)
	if e.Description != "" {
		s += ": " + e.Description
	}
	return s
}

// Is lets errors.Is match ErrUnauthorized (401) and ErrForbidden (403).
func (e *PublishError) Is(target error) bool {
	return (target == ErrUnauthorized && e.StatusCode == http.StatusUnauthorized) ||
		(target == ErrForbidden && e.StatusCode == http.StatusForbidden)
}

// Publish sends payload to topic. nil means the broker acknowledged the message (at QoS 0: took it).
func (p *HTTPPublisher) Publish(ctx context.Context, topic string, payload []byte, opts PublishOptions) error {
	if p.Tokens == nil {
		return errors.New("http publish: no token source")
	}
	u, err := topicURL(p.BaseURL, topic, opts)
	if err != nil {
		return err
	}
	err = p.publish(ctx, u, payload, opts)
	var pe *PublishError
	if r, ok := p.Tokens.(interface{ Reset() }); ok && errors.As(err, &pe) && pe.StatusCode == http.StatusUnauthorized && pe.Code != "no_token" {
		r.Reset() // expired or revoked early: one more try with a new token
		err = p.publish(ctx, u, payload, opts)
	}
	return err
}

func (p *HTTPPublisher) publish(ctx context.Context, u string, payload []byte, opts PublishOptions) error {
	tok, err := p.Tokens.Token(ctx)
	if err != nil {
		return fmt.Errorf("http publish: token: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(payload))
	if err != nil {
		return fmt.Errorf("http publish: %w", err)
	}
	h := req.Header
	h.Set("Authorization", "Bearer "+tok.AccessToken)
	if opts.ContentType != "" {
		h.Set("Content-Type", opts.ContentType)
	}
	if opts.MessageExpiry > 0 {
		h.Set("MQTT-Message-Expiry", strconv.FormatInt(int64(opts.MessageExpiry/time.Second), 10))
	}
	if opts.ResponseTopic != "" {
		h.Set("MQTT-Response-Topic", opts.ResponseTopic)
	}
	if opts.CorrelationData != nil {
		h.Set("MQTT-Correlation-Data", base64.StdEncoding.EncodeToString(opts.CorrelationData))
	}
	for _, up := range opts.UserProperties {
		h.Add("MQTT-User-Property", propertyEscape(up[0])+"="+propertyEscape(up[1]))
	}
	c := p.Client
	if c == nil {
		c = defaultHTTPClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("http publish: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusAccepted {
		return nil
	}
	pe := &PublishError{StatusCode: resp.StatusCode}
	var b struct {
		Error       string `json:"error"`
		Code        string `json:"mqtt_reason_code"`
		Description string `json:"error_description"`
	}
	if json.Unmarshal(body, &b) == nil {
		pe.Code, pe.ReasonCode, pe.Description = b.Error, b.Code, b.Description
	} else {
		pe.Description = strings.TrimSpace(string(body))
	}
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s >= 0 {
		pe.RetryAfter = time.Duration(s) * time.Second
	}
	return pe
}

// propertyEscape percent-encodes one side of key=value: PathEscape leaves "=" as it is, and the
// door splits at the first one.
func propertyEscape(s string) string { return strings.ReplaceAll(url.PathEscape(s), "=", "%3D") }

// defaultHTTPClient bounds a publish that has no deadline of its own.
var defaultHTTPClient = &http.Client{Timeout: 30 * time.Second}

// topicURL is the door's URL of topic: every level percent-encoded on its own, so that "#", "?" and
// spaces stay part of the topic and "/" keeps separating levels.
func topicURL(base, topic string, opts PublishOptions) (string, error) {
	if topic == "" {
		return "", errors.New("http publish: empty topic")
	}
	b, err := url.Parse(base)
	if err != nil || (b.Scheme != "http" && b.Scheme != "https") || b.Host == "" {
		return "", fmt.Errorf("http publish: base URL %q: want http(s)://host:port", base)
	}
	levels := strings.Split(topic, "/")
	for i, l := range levels {
		levels[i] = url.PathEscape(l)
	}
	q := url.Values{}
	if opts.AtMostOnce {
		q.Set("qos", "0")
	}
	if opts.Retain {
		q.Set("retain", "true")
	}
	u := strings.TrimRight(b.String(), "/") + "/topics/" + strings.Join(levels, "/")
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	return u, nil
}
