package examplestest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"

	"imb/amdev"
)

var (
	formAction = regexp.MustCompile(`<form method="post" action="([^"]*)"`)
	loginCSRF  = regexp.MustCompile(`name="login_csrf" value="([^"]*)"`)
	pageCSRF   = regexp.MustCompile(`name="csrf" value="([^"]*)"`)
)

// DecideDevice does what the user does in a browser at the verification URL the example printed:
// sign in as amdev's demo user, confirm the code, then Allow (allow) or Deny. It returns the final page.
func DecideDevice(ctx context.Context, verificationURL string, allow bool) (string, error) {
	jar, err := cookiejar.New(nil)
	if err != nil {
		return "", err
	}
	browser := &http.Client{Jar: jar}
	page, err := fetch(ctx, browser, http.MethodGet, verificationURL, nil)
	if err != nil {
		return "", err
	}
	code, err := url.Parse(verificationURL)
	if err != nil {
		return "", err
	}
	userCode := code.Query().Get("user_code")
	page, err = submit(ctx, browser, verificationURL, page, loginCSRF, url.Values{
		"username": {amdev.DemoUserID}, "password": {amdev.DefaultUserPassword}, "user_code": {userCode},
	})
	if err != nil {
		return "", fmt.Errorf("sign in: %w", err)
	}
	page, err = submit(ctx, browser, verificationURL, page, pageCSRF, url.Values{"user_code": {userCode}})
	if err != nil {
		return "", fmt.Errorf("confirm code: %w", err)
	}
	decision := "deny"
	if allow {
		decision = "allow"
	}
	return submit(ctx, browser, verificationURL, page, pageCSRF, url.Values{"user_code": {userCode}, "decision": {decision}})
}

// submit posts the page's form with its hidden CSRF field (found by csrf) and the given values.
func submit(ctx context.Context, browser *http.Client, base, page string, csrf *regexp.Regexp, form url.Values) (string, error) {
	action, token := formAction.FindStringSubmatch(page), csrf.FindStringSubmatch(page)
	if action == nil || token == nil {
		return "", fmt.Errorf("page has no form with %s:\n%s", csrf, page)
	}
	target, err := url.Parse(base)
	if err != nil {
		return "", err
	}
	target, err = target.Parse(strings.ReplaceAll(action[1], "&amp;", "&"))
	if err != nil {
		return "", err
	}
	name := strings.SplitN(strings.TrimPrefix(csrf.String(), `name="`), `"`, 2)[0]
	form.Set(name, token[1])
	return fetch(ctx, browser, http.MethodPost, target.String(), form)
}

func fetch(ctx context.Context, browser *http.Client, method, target string, form url.Values) (string, error) {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		return "", err
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := browser.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s %s: %s\n%s", method, target, resp.Status, data)
	}
	return string(data), nil
}
