package amdev

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// enqueue queues one delivery; beyond maxPendingSETs the SET is dropped with a warning.
func (tx *transmitter) enqueue(d *delivery) {
	if tx.pending.Add(1) > maxPendingSETs {
		tx.pending.Add(-1)
		tx.log.Warn("SET dropped: delivery queue full", "event", d.event, "jti", d.jti, "receiver", d.to.URL,
			"limit", maxPendingSETs)
		return
	}
	tx.queue <- d // never blocks: the channel holds maxPendingSETs
}

// work delivers queued SETs until the server stops.
func (tx *transmitter) work() {
	for {
		select {
		case <-tx.stop:
			return
		case d := <-tx.queue:
			tx.deliver(d)
		}
	}
}

// deliver pushes one SET and acts on the receiver's answer (readAnswer); a SET to try again is queued again
// after a doubling delay (Retry-After when the receiver gives one), up to maxDeliveryAttempts.
func (tx *transmitter) deliver(d *delivery) {
	d.attempt++
	a, err := tx.push(d)
	log := tx.log.With("event", d.event, "jti", d.jti, "receiver", d.to.URL, "attempt", d.attempt)
	if err == nil {
		switch a.verdict {
		case delivered:
			tx.pending.Add(-1)
			log.Info("SET delivered", "status", a.status)
			return
		case refused:
			tx.pending.Add(-1)
			log.Warn("SET refused by the receiver; not delivered again", "status", a.status, "err", a.err,
				"description", a.description)
			return
		case rejected:
			tx.pending.Add(-1)
			log.Warn("SET not accepted; not delivered again", "status", a.status, "body", a.description)
			return
		}
	}
	if d.attempt >= maxDeliveryAttempts {
		tx.pending.Add(-1)
		log.Error("SET not delivered: giving up", "status", a.status, "err", err)
		return
	}
	delay := firstRetryDelay << (d.attempt - 1)
	if a.retryAfter > 0 {
		delay = a.retryAfter
	}
	delay = min(delay, maxRetryDelay)
	log.Warn("SET not delivered; trying again", "status", a.status, "err", err, "retry_in", delay)
	time.AfterFunc(delay, func() {
		select {
		case <-tx.stop:
		case tx.queue <- d: // its place is still counted in pending
		}
	})
}

// Verdicts on a receiver's answer.
const (
	delivered = iota // 2xx
	refused          // 400: the receiver's verdict on the SET (RFC 8935 §2.3); never sent again
	rejected         // another 4xx: sending it again would not help
	retry            // 429, 5xx, or anything else: deliver again later
)

// pushAnswer is what a receiver said to one push.
type pushAnswer struct {
	status      int
	verdict     int
	err         string        // RFC 8935 err of a 400
	description string        // its description, or the start of another answer's body
	retryAfter  time.Duration // Retry-After in seconds, at most maxRetryDelay
}

// readAnswer judges a receiver's answer (untrusted input: any status, header and body).
func readAnswer(status int, retryAfter string, body []byte) pushAnswer {
	a := pushAnswer{status: status, verdict: retry}
	switch {
	case status >= 200 && status < 300:
		a.verdict = delivered
	case status == http.StatusBadRequest:
		a.verdict = refused
		var e struct {
			Err         string `json:"err"`
			Description string `json:"description"`
		}
		if json.Unmarshal(body, &e) == nil {
			a.err, a.description = truncateText(e.Err, 64), truncateText(e.Description, 300)
		}
	case status >= 400 && status < 500 && status != http.StatusTooManyRequests:
		a.verdict = rejected
		a.description = truncateText(string(body), 300)
	}
	if n, err := strconv.Atoi(strings.TrimSpace(retryAfter)); err == nil && n > 0 {
		a.retryAfter = time.Duration(min(n, int(maxRetryDelay/time.Second))) * time.Second
	}
	return a
}

// push makes one HTTP POST of the SET.
func (tx *transmitter) push(d *delivery) (pushAnswer, error) {
	ctx, cancel := context.WithTimeout(tx.ctx, deliveryTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.to.URL, strings.NewReader(d.set))
	if err != nil {
		return pushAnswer{}, fmt.Errorf("SET push: %w", err)
	}
	req.Header.Set("Content-Type", SETMediaType)
	req.Header.Set("Accept", "application/json")
	resp, err := tx.client.Do(req)
	if err != nil {
		return pushAnswer{}, fmt.Errorf("SET push: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	return readAnswer(resp.StatusCode, resp.Header.Get("Retry-After"), body), nil
}

func truncateText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
