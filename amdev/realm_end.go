package amdev

import (
	"context"
	"errors"
	"net/http"
	"time"

	"imb/amdev/store"
)

// realmEndKey is the revocation mark of a deleted realm: the Unix second
// of its deletion. Every token of the realm issued up to that second is
// refused, whatever its form (a JWT of the deleted realm still verifies),
// so that a realm created again at the path does not inherit its tokens.
func realmEndKey(realm string) string { return "realm:" + realm }

// endRealm removes what the store holds of a deleted realm: its
// identities, and (by the mark) its tokens; the records of those tokens
// expire on their own.
func (s *Server) endRealm(realm string) error {
	if err := s.db.Put(bucketRevoked, realmEndKey(realm), s.now().Unix(), time.Time{}); err != nil {
		return err
	}
	n, err := s.db.DeletePrefix(bucketIdentities, identityKey(realm, ""))
	if err != nil {
		return err
	}
	s.log.Info("realm identities removed", "realm", realm, "identities", n)
	return nil
}

// realmEndedAfter reports whether rec's realm was deleted at or after the
// second rec was issued: the token is of a realm that no longer exists.
func (s *Server) realmEndedAfter(rec *tokenRecord) (bool, error) {
	var ended int64
	err := s.db.Get(bucketRevoked, realmEndKey(rec.Grant.Realm), &ended, s.now())
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return rec.Issued <= ended, nil
}

// awaitRealmEnd delays the creation of a realm deleted in this very second
// until the next one, so that no token of the new realm is issued within
// the second its predecessor's mark refuses (token times are whole seconds).
func (s *Server) awaitRealmEnd(r *http.Request, b realmBody) error {
	path, err := b.fullPath()
	if err != nil {
		return nil // createRealm answers the bad name
	}
	var ended int64
	if err := s.db.Get(bucketRevoked, realmEndKey(path), &ended, s.now()); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		return err
	}
	wait := time.Unix(ended+1, 0).Sub(s.now())
	if wait <= 0 || wait > time.Second {
		return nil
	}
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	defer cancel()
	<-ctx.Done()
	return nil
}
