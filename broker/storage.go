package broker

import (
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

// StoredSysInfo restores nothing.
func (b boltStore) StoredSysInfo() (storage.SystemInfo, error) { return storage.SystemInfo{}, nil }
