package broker

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/mochi-mqtt/server/v2/hooks/storage"
	"github.com/mochi-mqtt/server/v2/packets"
	"go.etcd.io/bbolt"

	"imb/authz"
	"imb/hooks"
)

var (
	subjectsBucket = []byte("subjects")
	journalBucket  = []byte("journal")
)

// boltSubjects is the hooks.SubjectStore and hooks.Journal of a broker with a data
// directory: the owner and identity (principal, id, scopes, claims, never the token)
// behind each persistent session, and the QoS 1/2 messages accepted but not yet handed to
// their subscribers.
type boltSubjects struct{ db *bbolt.DB }

func openSubjects(path string, fsync bool) (*boltSubjects, error) {
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: 2 * time.Second, NoSync: !fsync})
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := db.Update(func(tx *bbolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(subjectsBucket); err != nil {
			return err
		}
		_, err := tx.CreateBucketIfNotExists(journalBucket)
		return err
	}); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return &boltSubjects{db: db}, nil
}

// subjectRecord is the stored form of a hooks.StoredSession: the subject's fields at
// the top level, as records were written before the owner was kept, and the owner
// beside them. An old record reads with Owner "", which the hook handles.
type subjectRecord struct {
	authz.Subject
	Owner string `json:",omitempty"`
}

func (s *boltSubjects) Put(clientID string, rec hooks.StoredSession) error {
	b, err := json.Marshal(subjectRecord{Subject: rec.Subject, Owner: rec.Owner})
	if err != nil {
		return fmt.Errorf("session store: %w", err)
	}
	return s.db.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket(subjectsBucket).Put([]byte(clientID), b)
	})
}

func (s *boltSubjects) Get(clientID string) (hooks.StoredSession, bool, error) {
	var rec subjectRecord
	var found bool
	err := s.db.View(func(tx *bbolt.Tx) error {
		v := tx.Bucket(subjectsBucket).Get([]byte(clientID))
		if v == nil {
			return nil
		}
		found = true
		return json.Unmarshal(v, &rec)
	})
	if err != nil {
		return hooks.StoredSession{}, false, fmt.Errorf("session store: %s: %w", clientID, err)
	}
	return hooks.StoredSession{Owner: rec.Owner, Subject: rec.Subject}, found, nil
}

func (s *boltSubjects) Delete(clientID string) error {
	return s.db.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket(subjectsBucket).Delete([]byte(clientID))
	})
}

func (s *boltSubjects) Close() error { return s.db.Close() }

// journalPut journals an accepted message.
func (s *boltSubjects) journalPut(key string, pk packets.Packet) error {
	m := storage.Message{
		FixedHeader: pk.FixedHeader,
		TopicName:   pk.TopicName,
		Payload:     pk.Payload,
		Origin:      pk.Origin,
		Created:     pk.Created,
		PacketID:    pk.PacketID, // a QoS 1/2 publish without one does not validate on replay
		Properties: storage.MessageProperties{
			PayloadFormat:         pk.Properties.PayloadFormat,
			PayloadFormatFlag:     pk.Properties.PayloadFormatFlag,
			MessageExpiryInterval: pk.Properties.MessageExpiryInterval,
			ContentType:           pk.Properties.ContentType,
			ResponseTopic:         pk.Properties.ResponseTopic,
			CorrelationData:       pk.Properties.CorrelationData,
			User:                  pk.Properties.User,
		},
	}
	b, err := m.MarshalBinary()
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	return s.db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(journalBucket).Put([]byte(key), b) })
}

// journalDelete ends a journal entry.
func (s *boltSubjects) journalDelete(key string) error {
	return s.db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(journalBucket).Delete([]byte(key)) })
}

// drain returns every journalled message and empties the journal.
func (s *boltSubjects) drain() ([]packets.Packet, error) {
	var out []packets.Packet
	err := s.db.Update(func(tx *bbolt.Tx) error {
		bk := tx.Bucket(journalBucket)
		if err := bk.ForEach(func(_, v []byte) error {
			var m storage.Message
			if err := m.UnmarshalBinary(v); err != nil {
				return err
			}
			out = append(out, m.ToPacket())
			return nil
		}); err != nil {
			return err
		}
		if err := tx.DeleteBucket(journalBucket); err != nil {
			return err
		}
		_, err := tx.CreateBucket(journalBucket)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	return out, nil
}

// journal is the store seen as a hooks.Journal.
type journal struct{ s *boltSubjects }

func (j journal) Put(key string, pk packets.Packet) error { return j.s.journalPut(key, pk) }
func (j journal) Delete(key string) error                 { return j.s.journalDelete(key) }
