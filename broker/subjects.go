package broker

import (
	"encoding/json"
	"fmt"
	"time"

	"go.etcd.io/bbolt"

	"imb/authz"
)

var subjectsBucket = []byte("subjects")

// boltSubjects is the hooks.SubjectStore of a broker with a data directory: the
// identity (id, scopes, claims, never the token) behind each persistent session.
type boltSubjects struct{ db *bbolt.DB }

func openSubjects(path string, fsync bool) (*boltSubjects, error) {
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: 2 * time.Second, NoSync: !fsync})
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := db.Update(func(tx *bbolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(subjectsBucket)
		return err
	}); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return &boltSubjects{db: db}, nil
}

func (s *boltSubjects) Put(clientID string, subj authz.Subject) error {
	b, err := json.Marshal(subj)
	if err != nil {
		return fmt.Errorf("session store: %w", err)
	}
	return s.db.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket(subjectsBucket).Put([]byte(clientID), b)
	})
}

func (s *boltSubjects) Get(clientID string) (authz.Subject, bool, error) {
	var subj authz.Subject
	var found bool
	err := s.db.View(func(tx *bbolt.Tx) error {
		v := tx.Bucket(subjectsBucket).Get([]byte(clientID))
		if v == nil {
			return nil
		}
		found = true
		return json.Unmarshal(v, &subj)
	})
	if err != nil {
		return authz.Subject{}, false, fmt.Errorf("session store: %s: %w", clientID, err)
	}
	return subj, found, nil
}

func (s *boltSubjects) Delete(clientID string) error {
	return s.db.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket(subjectsBucket).Delete([]byte(clientID))
	})
}

func (s *boltSubjects) Close() error { return s.db.Close() }
