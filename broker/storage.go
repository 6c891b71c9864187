package broker

import (
	"strconv"
	"strings"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/storage"
	"github.com/mochi-mqtt/server/v2/hooks/storage/bolt"
)

// boltStore is mochi's bolt storage hook minus what imb does not want from it: $SYS
// statistics are not persisted (they are not restored either, and the hook writes
// them on every tick and logs an error on a fresh store), and Provides is a switch
// rather than a byte search, since mochi asks every hook about every event.
type boltStore struct {
	*bolt.Hook
}

func (b boltStore) Provides(e byte) bool {
	switch e {
	case mqtt.OnSessionEstablished, mqtt.OnDisconnect, mqtt.OnSubscribed, mqtt.OnUnsubscribed,
		mqtt.OnRetainMessage, mqtt.OnWillSent, mqtt.OnQosPublish, mqtt.OnQosComplete, mqtt.OnQosDropped,
		mqtt.OnClientExpired, mqtt.OnRetainedExpired, mqtt.StoredClients, mqtt.StoredInflightMessages,
		mqtt.StoredRetainedMessages, mqtt.StoredSubscriptions:
		return true
	}
	return false
}

// StoredInflightMessages restores the queued messages with their packet ids. The
// bolt hook stores a message under "if_<client>:<packet id>" but leaves PacketID
// out of the record, so every restored message would get id 0: they would replace
// one another in the session and the resend on resumption would fail to encode.
func (b boltStore) StoredInflightMessages() ([]storage.Message, error) {
	msgs, err := b.Hook.StoredInflightMessages()
	for i := range msgs {
		if msgs[i].PacketID != 0 {
			continue
		}
		j := strings.LastIndexByte(msgs[i].ID, ':')
		if j < 0 {
			continue
		}
		if id, perr := strconv.ParseUint(msgs[i].ID[j+1:], 10, 16); perr == nil {
			msgs[i].PacketID = uint16(id)
		}
	}
	return msgs, err
}

// StoredSysInfo restores nothing.
func (b boltStore) StoredSysInfo() (storage.SystemInfo, error) { return storage.SystemInfo{}, nil }
