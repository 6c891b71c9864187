package interop

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"imb/amdev"
)

// TestFrodoRoundTrip drives amdev with Frodo (@rockcarver/frodo-cli 3.1.0),
// ForgeRock's administration CLI, unchanged, as a team moves configuration
// between environments: realm list, then export and import of an OAuth2
// client and of a journey. An edited export imported again must change what
// amdev serves.
func TestFrodoRoundTrip(t *testing.T) {
	nodeModule(t, "@rockcarver/frodo-cli")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	st := amdev.DefaultSettings()
	st.Realms = []string{"/fleet"}
	am, err := amdev.Start(ctx, amdev.Config{Listen: "127.0.0.1:0", InMemory: true, Settings: &st,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = am.Close() })
	// Frodo wants a host name; localhost resolves without DNS.
	base := strings.Replace(am.URL(), "127.0.0.1", "localhost", 1)
	home, work := t.TempDir(), t.TempDir()
	frodo, err := filepath.Abs("node_modules/.bin/frodo")
	if err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) string {
		t.Helper()
		cctx, ccancel := context.WithTimeout(ctx, 90*time.Second)
		defer ccancel()
		cmd := exec.CommandContext(cctx, frodo, append(args, base, "/", "amAdmin", "changeit")...)
		cmd.Dir, cmd.Env, cmd.WaitDelay = work, append(os.Environ(), "HOME="+home, "NO_COLOR=1"), 5*time.Second
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("frodo %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	if out := run("realm", "list"); !strings.Contains(out, "/fleet") {
		t.Fatalf("frodo realm list does not list /fleet:\n%s", out)
	}

	// OAuth2 client: export, edit the scopes, import, and amdev serves the edit.
	run("oauth", "client", "export", "-i", amdev.CloudAppClientID)
	clientFile := filepath.Join(work, amdev.CloudAppClientID+".oauth2.app.json")
	edit(t, clientFile, func(doc map[string]any) {
		app := doc["application"].(map[string]any)[amdev.CloudAppClientID].(map[string]any)
		app["coreOAuth2ClientConfig"].(map[string]any)["scopes"] = map[string]any{"inherited": false, "value": []string{"fleet:read"}}
		app["coreOAuth2ClientConfig"].(map[string]any)["defaultScopes"] = map[string]any{"inherited": false, "value": []string{"fleet:read"}}
	})
	run("oauth", "client", "import", "-i", amdev.CloudAppClientID, "-f", clientFile)
	app, _ := am.CloudAppClient()
	if _, err := am.IssueClientToken(ctx, app.ID, []string{"fleet:command"}); err == nil {
		t.Fatal("the imported client still grants fleet:command")
	}
	if _, err := am.IssueClientToken(ctx, app.ID, []string{"fleet:read"}); err != nil {
		t.Fatalf("the imported client: %v", err)
	}

	// Journey: export, edit the Authenticate Thing node, import; the next login follows the edit.
	run("journey", "export", "-i", "auth-tree")
	journeyFile := filepath.Join(work, "auth-tree.journey.json")
	edit(t, journeyFile, func(doc map[string]any) {
		nodes := doc["nodes"].(map[string]any) // Frodo's single-journey export: tree, nodes, innerNodes, scripts…
		if len(nodes) != 1 {
			t.Fatalf("exported auth-tree has %d nodes", len(nodes))
		}
		for _, n := range nodes {
			n.(map[string]any)["jwtAuthenticationMethod"] = amdev.MethodClientAssertion
		}
	})
	run("journey", "import", "-i", "auth-tree", "-f", journeyFile)
	if kind := firstCallback(t, ctx, am.URL(), "auth-tree"); kind != "client_assertion" {
		t.Fatalf("after the import auth-tree asks for %q, want client_assertion", kind)
	}
	if out := run("journey", "list"); !strings.Contains(out, "auth-tree") {
		t.Fatalf("frodo journey list:\n%s", out)
	}
}

// edit rewrites a JSON file through change.
func edit(t *testing.T, path string, change func(map[string]any)) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	change(doc)
	out, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
}

// firstCallback is the id of the first HiddenValueCallback a tree asks for.
func firstCallback(t *testing.T, ctx context.Context, base, tree string) string {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/json/authenticate?authIndexType=service&authIndexValue="+tree, strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Callbacks []struct {
			Output []struct {
				Name  string `json:"name"`
				Value any    `json:"value"`
			} `json:"output"`
		} `json:"callbacks"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || len(body.Callbacks) == 0 {
		t.Fatalf("%s: %d %v", tree, resp.StatusCode, err)
	}
	for _, o := range body.Callbacks[0].Output {
		if o.Name == "id" {
			s, _ := o.Value.(string)
			return s
		}
	}
	return ""
}
