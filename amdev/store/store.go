// Package store is amdev's embedded key-value store: a bbolt database of JSON
// records grouped in buckets, each record with an optional expiry.
//
// Records are JSON so that a developer can inspect a data directory with any
// bbolt tool; the expiry lives in a small envelope so that one sweep can purge
// every kind of short-lived record (refresh tokens, revocations, opaque tokens).
package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ErrNotFound is returned by Get when the key is absent or its record expired.
var ErrNotFound = errors.New("store: not found")

// DB is an open store. It is safe for concurrent use.
type DB struct {
	bolt    *bolt.DB
	tempDir string // removed on Close when the store is in-memory
}

// envelope wraps every stored value with its expiry (zero: never expires).
type envelope struct {
	Expires time.Time       `json:"exp,omitzero"`
	Value   json.RawMessage `json:"v"`
}

// Open opens (creating if needed) the database file amdev.db in dir.
func Open(dir string) (*DB, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("store: create %s: %w", dir, err)
	}
	path := filepath.Join(dir, "amdev.db")
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	return &DB{bolt: db}, nil
}

// OpenTemp opens a store in a fresh temporary directory that Close removes:
// the in-memory mode, exercising the same code as the persistent one.
func OpenTemp() (*DB, error) {
	dir, err := os.MkdirTemp("", "amdev-store-")
	if err != nil {
		return nil, fmt.Errorf("store: temp dir: %w", err)
	}
	db, err := Open(dir)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	db.tempDir = dir
	return db, nil
}

// Close closes the database (and removes it when it was temporary).
func (d *DB) Close() error {
	err := d.bolt.Close()
	if d.tempDir != "" {
		if rerr := os.RemoveAll(d.tempDir); rerr != nil && err == nil {
			err = fmt.Errorf("store: remove %s: %w", d.tempDir, rerr)
		}
	}
	return err
}

// Put stores v (JSON-encoded) under bucket/key; a zero expires never expires.
func (d *DB) Put(bucket, key string, v any, expires time.Time) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("store: encode %s/%s: %w", bucket, key, err)
	}
	data, err := json.Marshal(envelope{Expires: expires, Value: raw})
	if err != nil {
		return fmt.Errorf("store: encode %s/%s: %w", bucket, key, err)
	}
	err = d.bolt.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte(bucket))
		if err != nil {
			return err
		}
		return b.Put([]byte(key), data)
	})
	if err != nil {
		return fmt.Errorf("store: put %s/%s: %w", bucket, key, err)
	}
	return nil
}

// PutIfAbsent stores v unless a live record exists; it reports whether it stored.
func (d *DB) PutIfAbsent(bucket, key string, v any, expires time.Time, now time.Time) (bool, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return false, fmt.Errorf("store: encode %s/%s: %w", bucket, key, err)
	}
	data, err := json.Marshal(envelope{Expires: expires, Value: raw})
	if err != nil {
		return false, fmt.Errorf("store: encode %s/%s: %w", bucket, key, err)
	}
	stored := false
	err = d.bolt.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte(bucket))
		if err != nil {
			return err
		}
		if old := b.Get([]byte(key)); old != nil {
			var env envelope
			if json.Unmarshal(old, &env) == nil && (env.Expires.IsZero() || now.Before(env.Expires)) {
				return nil
			}
		}
		stored = true
		return b.Put([]byte(key), data)
	})
	if err != nil {
		return false, fmt.Errorf("store: put %s/%s: %w", bucket, key, err)
	}
	return stored, nil
}

// Get decodes the live record at bucket/key into v; ErrNotFound if absent or expired at now.
func (d *DB) Get(bucket, key string, v any, now time.Time) error {
	var data []byte
	err := d.bolt.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucket))
		if b == nil {
			return nil
		}
		if got := b.Get([]byte(key)); got != nil {
			data = append([]byte(nil), got...)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: get %s/%s: %w", bucket, key, err)
	}
	if data == nil {
		return ErrNotFound
	}
	var env envelope
	if err := json.Unmarshal(data, &env); err != nil {
		return fmt.Errorf("store: decode %s/%s: %w", bucket, key, err)
	}
	if !env.Expires.IsZero() && !now.Before(env.Expires) {
		return ErrNotFound
	}
	if err := json.Unmarshal(env.Value, v); err != nil {
		return fmt.Errorf("store: decode %s/%s: %w", bucket, key, err)
	}
	return nil
}

// Delete removes bucket/key; it reports whether a record was there.
func (d *DB) Delete(bucket, key string) (bool, error) {
	found := false
	err := d.bolt.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucket))
		if b == nil {
			return nil
		}
		if b.Get([]byte(key)) == nil {
			return nil
		}
		found = true
		return b.Delete([]byte(key))
	})
	if err != nil {
		return false, fmt.Errorf("store: delete %s/%s: %w", bucket, key, err)
	}
	return found, nil
}

// DeletePrefix removes every record of bucket whose key starts with
// prefix and returns how many.
func (d *DB) DeletePrefix(bucket, prefix string) (int, error) {
	n := 0
	err := d.bolt.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucket))
		if b == nil {
			return nil
		}
		c := b.Cursor()
		p := []byte(prefix)
		var keys [][]byte
		for k, _ := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, _ = c.Next() {
			keys = append(keys, append([]byte(nil), k...))
		}
		for _, k := range keys {
			if err := b.Delete(k); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if err != nil {
		return n, fmt.Errorf("store: delete %s/%s*: %w", bucket, prefix, err)
	}
	return n, nil
}

// Sweep deletes every record of every bucket that expired at now and returns how many.
func (d *DB) Sweep(now time.Time) (int, error) {
	n := 0
	err := d.bolt.Update(func(tx *bolt.Tx) error {
		return tx.ForEach(func(_ []byte, b *bolt.Bucket) error {
			var dead [][]byte
			err := b.ForEach(func(k, v []byte) error {
				var env envelope
				if json.Unmarshal(v, &env) == nil && !env.Expires.IsZero() && !now.Before(env.Expires) {
					dead = append(dead, append([]byte(nil), k...))
				}
				return nil
			})
			if err != nil {
				return err
			}
			for _, k := range dead {
				if err := b.Delete(k); err != nil {
					return err
				}
				n++
			}
			return nil
		})
	})
	if err != nil {
		return n, fmt.Errorf("store: sweep: %w", err)
	}
	return n, nil
}
