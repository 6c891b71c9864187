package cluster

// SetAfterLastRead makes every replay call f once it has read the stream's last
// message (nil: nothing).
func SetAfterLastRead(f func(clientID string)) {
	if f == nil {
		afterLastRead.Store(nil)
		return
	}
	afterLastRead.Store(&f)
}
