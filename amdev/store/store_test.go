package store

import (
	"errors"
	"os"
	"testing"
	"time"
)

type rec struct {
	Name string `json:"name"`
	N    int    `json:"n"`
}

func TestPutGetExpiryAndReopen(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_700_000_000, 0)
	if err := db.Put("b", "forever", rec{"a", 1}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := db.Put("b", "short", rec{"b", 2}, now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	var got rec
	if err := db.Get("b", "short", &got, now); err != nil || got != (rec{"b", 2}) {
		t.Fatalf("get: %v %v", got, err)
	}
	if err := db.Get("b", "short", &got, now.Add(time.Minute)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("expired record: %v", err)
	}
	if err := db.Get("nobucket", "x", &got, now); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing bucket: %v", err)
	}
	stored, err := db.PutIfAbsent("b", "forever", rec{"c", 3}, time.Time{}, now)
	if err != nil || stored {
		t.Fatalf("PutIfAbsent over a live record: %v %v", stored, err)
	}
	stored, err = db.PutIfAbsent("b", "short", rec{"d", 4}, time.Time{}, now.Add(2*time.Minute))
	if err != nil || !stored {
		t.Fatalf("PutIfAbsent over an expired record: %v %v", stored, err)
	}
	if err := db.Put("b", "gone", rec{}, now.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if n, err := db.Sweep(now.Add(time.Hour)); err != nil || n != 1 {
		t.Fatalf("sweep: %d %v", n, err)
	}
	if found, err := db.Delete("b", "forever"); err != nil || !found {
		t.Fatalf("delete: %v %v", found, err)
	}
	if found, err := db.Delete("b", "forever"); err != nil || found {
		t.Fatalf("delete again: %v %v", found, err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Get("b", "short", &got, now); err != nil || got != (rec{"d", 4}) {
		t.Fatalf("after reopen: %v %v", got, err)
	}
}

func TestOpenTempIsRemoved(t *testing.T) {
	db, err := OpenTemp()
	if err != nil {
		t.Fatal(err)
	}
	dir := db.tempDir
	if err := db.Put("b", "k", 1, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("temp store left behind: %v", err)
	}
	if _, err := Open("/proc/definitely/not/writable"); err == nil {
		t.Fatal("unwritable dir accepted")
	}
}

func TestDeletePrefix(t *testing.T) {
	db, err := OpenTemp()
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	now := time.Unix(1_700_000_000, 0)
	for _, k := range []string{"/a\x00x", "/a\x00y", "/a/b\x00x", "/ab\x00x", "/\x00x"} {
		if err := db.Put("ids", k, rec{k, 1}, time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	n, err := db.DeletePrefix("ids", "/a\x00")
	if err != nil || n != 2 {
		t.Fatalf("DeletePrefix: %d %v", n, err)
	}
	var got rec
	for k, want := range map[string]bool{"/a\x00x": false, "/a\x00y": false, "/a/b\x00x": true, "/ab\x00x": true, "/\x00x": true} {
		if err := db.Get("ids", k, &got, now); (err == nil) != want {
			t.Errorf("%q after DeletePrefix: %v, want present %t", k, err, want)
		}
	}
	if n, err := db.DeletePrefix("nobucket", "x"); err != nil || n != 0 {
		t.Fatalf("missing bucket: %d %v", n, err)
	}
}
