package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
)

// subjectQuery carries questions every node answers (the administrator's session listing).
const subjectQuery = "imb.query"

// Gather asks every other node question (the HookConfig.Query of each answers) and returns their answers, those
// that arrived within wait: a node that does not answer in time is left out, and the caller says so.
func (h *Hook) Gather(ctx context.Context, question []byte, wait time.Duration) ([][]byte, error) {
	inbox := h.e.nc.NewRespInbox()
	sub, err := h.e.nc.SubscribeSync(inbox)
	if err != nil {
		return nil, fmt.Errorf("cluster: query: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	msg := &nats.Msg{Subject: subjectQuery, Reply: inbox, Data: question, Header: nats.Header{}}
	msg.Header.Set("node", h.e.opts.NodeName) // the asking node answers itself
	if err := h.e.nc.PublishMsg(msg); err != nil {
		return nil, fmt.Errorf("cluster: query: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	var out [][]byte
	for {
		m, err := sub.NextMsgWithContext(ctx)
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			return out, nil
		}
		if err != nil {
			return out, fmt.Errorf("cluster: query: %w", err)
		}
		out = append(out, m.Data)
	}
}

// onQuery answers another node's question.
func (h *Hook) onQuery(m *nats.Msg) {
	if h.cfg.Query == nil || m.Reply == "" || m.Header.Get("node") == h.e.opts.NodeName {
		return
	}
	if ans := h.cfg.Query(m.Data); ans != nil {
		_ = m.Respond(ans)
	}
}
