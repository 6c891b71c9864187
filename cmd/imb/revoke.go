package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// devAdmin is what imb dev writes for imb revoke: where the admin API is and the administrator's OAuth2 client
// it provisioned in amdev (development values, like every amdev secret).
type devAdmin struct {
	Admin        string `json:"admin"` // base URL of the admin listener
	TokenURL     string `json:"token_url"`
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret"`
	Scope        string `json:"scope"`
}

// devAdminFile is where imb dev writes devAdmin and imb revoke reads it by default: $IMB_ADMIN_FILE, else
// imb/dev-admin.json under the user's configuration directory ($XDG_CONFIG_HOME, ~/.config).
func devAdminFile() string {
	if f := os.Getenv("IMB_ADMIN_FILE"); f != "" {
		return f
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		return filepath.Join(".imb-dev", "dev-admin.json")
	}
	return filepath.Join(dir, "imb", "dev-admin.json")
}

// devAdminClientID is the administrator's client imb dev provisions in amdev.
const devAdminClientID = "imb-admin"

// devAdminScope is the admin_scope of imb dev.
const devAdminScope = "imb:admin"

// newDevAdmin makes the administrator's client of one imb dev run, with a fresh secret.
func newDevAdmin(admin, tokenURL string) devAdmin {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return devAdmin{Admin: "http://" + admin, TokenURL: tokenURL, ClientID: devAdminClientID,
		ClientSecret: hex.EncodeToString(b), Scope: devAdminScope}
}

// write saves d where imb revoke looks for it, readable by the user alone.
func (d devAdmin) write(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("admin client file: %w", err)
	}
	b, _ := json.MarshalIndent(d, "", "  ")
	if err := os.WriteFile(path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("admin client file: %w", err)
	}
	return nil
}

// runRevoke is imb revoke: it gets an access token by the client credentials grant and asks the broker's admin
// API to revoke a subject, a client id or a token.
func runRevoke(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("imb revoke",
		"imb revoke --sub ID | --client-id ID | --token-sha256 HEX [--reason TEXT] [--admin URL] [--token-url URL --client ID --client-secret S] [--scope S]",
		"Ends every connection of a thing at once (DISCONNECT 0x87), on every node of a cluster, and refuses its\n"+
			"tokens issued until now. The call is authenticated with an access token the command gets from the\n"+
			"identity provider by client credentials; against imb dev no flag but the target is needed (imb dev\n"+
			"writes its admin client to "+devAdminFile()+"). docs/revocation.md.")
	sub := fs.String("sub", "", "revoke this subject (sub as issued, or the plain thing id)")
	issuer := fs.String("issuer", "", "with --sub: only this issuer's subject")
	clientID := fs.String("client-id", "", "revoke this MQTT client identifier")
	tokenHash := fs.String("token-sha256", "", "revoke the token whose SHA-256 is this (hex): sha256sum of the token as presented")
	reason := fs.String("reason", "", "why, for the audit log and the DISCONNECT's reason string")
	admin := fs.String("admin", "", "base URL of the broker's admin listener (default: imb dev's, else http://127.0.0.1:9100)")
	tokenURL := fs.String("token-url", "", "the identity provider's token endpoint (default: imb dev's)")
	client := fs.String("client", "", "the administrator's OAuth2 client id (default: imb dev's)")
	secret := fs.String("client-secret", "", "its secret (prefer IMB_ADMIN_CLIENT_SECRET)")
	scope := fs.String("scope", "", "scope to ask for: the broker's admin_scope (default: imb dev's, else the client's default scopes)")
	adminFile := fs.String("admin-file", devAdminFile(), "imb dev's admin client file, read for what the flags leave out")
	timeout := fs.Duration("timeout", 10*time.Second, "bound on the whole command")
	certFile := fs.String("cert", "", "client certificate (PEM) for an HTTPS admin listener with admin_client_ca: sent instead of a token")
	keyFile := fs.String("key", "", "the client certificate's private key (PEM)")
	caFile := fs.String("cacert", "", "CA bundle (PEM) that issued the admin listener's certificate (default: the system's)")
	if code := fs.parse(args, 0, stdout, stderr); code >= 0 {
		return code
	}
	usageErr := func(msg string) int {
		fmt.Fprintf(stderr, "imb revoke: %s\n\n", msg)
		fs.printHelp(stderr)
		return exitUsage
	}
	n := 0
	for _, v := range []string{*sub, *clientID, *tokenHash} {
		if v != "" {
			n++
		}
	}
	if n != 1 {
		return usageErr("give exactly one of --sub, --client-id and --token-sha256")
	}
	if *issuer != "" && *sub == "" {
		return usageErr("--issuer qualifies --sub only")
	}
	if *secret == "" {
		*secret = os.Getenv("IMB_ADMIN_CLIENT_SECRET")
	}
	// What the flags leave out comes from imb dev's file, when there is one.
	if (*certFile == "") != (*keyFile == "") {
		return usageErr("--cert and --key go together")
	}
	httpClient, err := adminHTTPClient(*certFile, *keyFile, *caFile)
	if err != nil {
		fmt.Fprintf(stderr, "imb revoke: %v\n", err)
		return exitUsage
	}
	if *certFile == "" && (*tokenURL == "" || *client == "" || *secret == "" || *admin == "") {
		if d, err := readDevAdmin(*adminFile); err == nil {
			fill := func(p *string, v string) {
				if *p == "" {
					*p = v
				}
			}
			fill(admin, d.Admin)
			fill(tokenURL, d.TokenURL)
			fill(client, d.ClientID)
			fill(secret, d.ClientSecret)
			fill(scope, d.Scope)
		} else if !errors.Is(err, os.ErrNotExist) {
			fmt.Fprintf(stderr, "imb revoke: %v\n", err)
			return exitUsage
		}
	}
	if *admin == "" {
		*admin = "http://127.0.0.1:9100"
	}
	if *certFile == "" && (*tokenURL == "" || *client == "" || *secret == "") {
		return usageErr("no administrator's client: give --token-url, --client and --client-secret, or --cert and --key (or run imb dev, which writes " + *adminFile + ")")
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	token := ""
	if *certFile == "" {
		if token, err = clientCredentials(ctx, *tokenURL, *client, *secret, *scope); err != nil {
			fmt.Fprintln(stderr, "imb revoke:", err)
			return exitRuntime
		}
	}
	body, _ := json.Marshal(map[string]string{"sub": *sub, "issuer": *issuer, "client_id": *clientID,
		"token_sha256": strings.ToLower(*tokenHash), "reason": *reason})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(*admin, "/")+"/admin/v1/revocations", strings.NewReader(string(body)))
	if err != nil {
		return usageErr(fmt.Sprintf("--admin %q: %v", *admin, err))
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := httpClient.Do(req)
	if err != nil {
		fmt.Fprintln(stderr, "imb revoke: admin API:", err)
		return exitRuntime
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "imb revoke: the broker answered %s: %s\n", resp.Status, strings.TrimSpace(string(answer)))
		if resp.StatusCode == http.StatusBadRequest {
			return exitUsage
		}
		return exitRuntime
	}
	var out struct {
		Revoked  string `json:"revoked"`
		Node     string `json:"node"`
		Sessions int    `json:"sessions_ended_here"`
		Cluster  bool   `json:"cluster"`
	}
	_ = json.Unmarshal(answer, &out)
	where := ""
	if out.Cluster {
		where = " (every other node of the cluster was told)"
	}
	fmt.Fprintf(stdout, "imb revoke: %s revoked: %d connection(s) ended on node %s%s\n", out.Revoked, out.Sessions, out.Node, where)
	return exitOK
}

// adminHTTPClient is the client for the admin call: with a client certificate
// (mTLS to an admin listener with admin_client_ca) and a CA for the listener's
// own certificate when given.
func adminHTTPClient(certFile, keyFile, caFile string) (*http.Client, error) {
	if certFile == "" && caFile == "" {
		return http.DefaultClient, nil
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS12}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("--cert %s and --key %s: %w", certFile, keyFile, err)
		}
		conf.Certificates = []tls.Certificate{cert}
	}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("--cacert: %w", err)
		}
		conf.RootCAs = x509.NewCertPool()
		if !conf.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--cacert %s: no PEM certificate found", caFile)
		}
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: conf}}, nil
}

// readDevAdmin reads imb dev's admin client file.
func readDevAdmin(path string) (devAdmin, error) {
	var d devAdmin
	b, err := os.ReadFile(path)
	if err != nil {
		return d, err
	}
	if err := json.Unmarshal(b, &d); err != nil {
		return d, fmt.Errorf("%s: %w", path, err)
	}
	return d, nil
}

// clientCredentials gets an access token by the client credentials grant (RFC 6749 §4.4), the client
// authenticated by HTTP Basic.
func clientCredentials(ctx context.Context, tokenURL, id, secret, scope string) (string, error) {
	form := url.Values{"grant_type": {"client_credentials"}}
	if scope != "" {
		form.Set("scope", scope)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, tokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return "", fmt.Errorf("token endpoint %q: %w", tokenURL, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("token endpoint: %w", err)
	}
	defer resp.Body.Close()
	var tr struct {
		AccessToken string `json:"access_token"`
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&tr); err != nil || resp.StatusCode != http.StatusOK || tr.AccessToken == "" {
		return "", fmt.Errorf("token endpoint %s answered %s %s %s", tokenURL, resp.Status, tr.Error, tr.Description)
	}
	return tr.AccessToken, nil
}
