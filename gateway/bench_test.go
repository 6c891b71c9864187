package gateway_test

import (
	"context"
	"testing"

	"imb/sdk"
)

// BenchmarkAccessToken compares one PoP-signed get_access_token through the gateway (coaps, DTLS
// session reused) with the same call straight to amdev over HTTP.
func BenchmarkAccessToken(b *testing.B) {
	for _, via := range []string{"gateway", "direct"} {
		b.Run(via, func(b *testing.B) {
			e := startEnv(b, "auth-tree", false, "bench-thing")
			ctx := context.Background()
			url := e.url
			if via == "direct" {
				url = e.am.URL()
			}
			c, err := sdk.NewClient(ctx, sdk.Config{BaseURL: url, Realm: "/", Key: e.things["bench-thing"]})
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			thing := c.NewThing("auth-tree", &sdk.Authenticator{ThingID: "bench-thing", Key: e.things["bench-thing"]})
			if _, err := thing.Login(ctx); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for b.Loop() {
				if _, err := thing.AccessToken(ctx, "publish"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
