package broker

import (
	"context"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// watchPolicy reloads the policy when its file changes. It watches the directory,
// not the file, because editors and configuration managers replace files by rename.
func (b *Broker) watchPolicy(ctx context.Context) {
	if b.cfg.PolicyFile == "" || b.cfg.Policy != nil {
		return
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		b.log.Warn("policy file not watched; reload with SIGHUP", "error", err)
		return
	}
	defer w.Close()
	abs, err := filepath.Abs(b.cfg.PolicyFile)
	if err != nil {
		abs = b.cfg.PolicyFile
	}
	if err := w.Add(filepath.Dir(abs)); err != nil {
		b.log.Warn("policy file not watched; reload with SIGHUP", "error", err)
		return
	}
	var debounce <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-b.stopped:
			return
		case ev, ok := <-w.Events:
			if !ok {
				return
			}
			if filepath.Clean(ev.Name) == abs && ev.Op&(fsnotify.Write|fsnotify.Create|fsnotify.Rename) != 0 {
				// Writers often truncate then write: wait for the file to settle.
				debounce = time.After(200 * time.Millisecond)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return
			}
			b.log.Warn("policy watch", "error", err)
		case <-debounce:
			debounce = nil
			_ = b.ReloadPolicy()
		}
	}
}
