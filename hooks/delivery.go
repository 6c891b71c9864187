package hooks

import (
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Reasons a delivery is dropped, the values of imb_deliveries_dropped_total's
// reason label.
const (
	dropQueueFull    = "queue_full"           // the subscriber's outbound queue stayed full for delivery_wait
	dropInflightFull = "inflight_full"        // its store of unacknowledged QoS>0 messages stayed full
	dropPacketIDs    = "packet_ids_exhausted" // no free packet identifier for it
)

// OnPublishDropped counts and logs a delivery the broker gave up on. The patched
// mochi (third_party/mochi-mqtt-server) calls it after the publisher was held for
// delivery_wait; a PUBLISH's ReasonCode, otherwise unused, says 0x97 when the
// subscriber's in-flight store was the bound that was reached.
func (h *Hook) OnPublishDropped(cl *mqtt.Client, pk packets.Packet) {
	reason := dropQueueFull
	if pk.ReasonCode == packets.ErrQuotaExceeded.Code {
		reason = dropInflightFull
	}
	h.deliveryDropped(cl, pk, reason)
}

// OnPacketIDExhausted counts and logs a delivery dropped because every packet
// identifier of the subscriber is in use.
func (h *Hook) OnPacketIDExhausted(cl *mqtt.Client, pk packets.Packet) {
	h.deliveryDropped(cl, pk, dropPacketIDs)
}

func (h *Hook) deliveryDropped(cl *mqtt.Client, pk packets.Packet, reason string) {
	h.metrics.deliveryDropped(reason)
	h.cfg.Server.Log.Warn("delivery dropped", "reason", reason, "client", cl.ID, "topic", pk.TopicName,
		"qos", pk.FixedHeader.Qos, "origin", pk.Origin)
}
