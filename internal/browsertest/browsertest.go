// Package browsertest runs the web page's tests in a real headless
// Chromium (the distribution's /usr/bin/chromium, driven by chromedp): a
// fresh profile per browser, removed afterwards, no network beyond what the
// page asks for, and a record of every console message and request so a
// test can assert that the page logged no error or CSP violation and asked
// nothing of any host but its own.
package browsertest

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// Browser is one headless Chromium with one tab (Ctx), and what that tab
// logged and requested.
type Browser struct {
	// Ctx is the tab's chromedp context; cancelled at the test's end.
	Ctx context.Context
	// State, when set, is a JavaScript expression whose value (a string)
	// a failure reports, to tell what the page showed.
	State string

	mu       sync.Mutex
	console  []chromedp.ConsoleMessage
	requests []string
}

// Path returns the Chromium binary the tests use: chromium (Debian's
// package) or chromium-browser on PATH, else "" (none).
func Path() string {
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// Start starts Chromium headless for t, or skips t when there is none and
// the test does not run in CI (env CI set: .ci/run installs chromium, so CI
// never skips; there it fails). The browser and its profile directory go
// when t ends. timeout bounds everything the tab does.
func Start(t testing.TB, timeout time.Duration) *Browser {
	t.Helper()
	if Path() == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("browser test: no chromium on PATH in CI (.ci/run installs the chromium package)")
		}
		t.Skip("browser test: no chromium on PATH (apt-get install chromium; .ci/run installs it)")
	}
	b, stop, err := Launch(timeout, "")
	t.Cleanup(stop)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// ErrNoChromium is Launch's error when neither chromium nor
// chromium-browser is on PATH.
var ErrNoChromium = errors.New("no chromium on PATH (apt-get install chromium)")

// Launch starts Chromium headless with a fresh profile directory made in
// profileParent ("" for the system's temporary directory), outside of
// tests (Start is the tests' form). timeout bounds everything the tab
// does. stop, never nil and safe to call more than once, ends the browser
// and removes the profile directory; call it also when err is not nil.
// err is ErrNoChromium when there is no browser, or says why it did not
// start.
func Launch(timeout time.Duration, profileParent string) (b *Browser, stop func(), err error) {
	stop = func() {}
	exe := Path()
	if exe == "" {
		return nil, stop, ErrNoChromium
	}
	dir, err := os.MkdirTemp(profileParent, "nanoseg-chromium-")
	if err != nil {
		return nil, stop, fmt.Errorf("chromium profile directory: %w", err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(dir),
		chromedp.WindowSize(1400, 900),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("no-proxy-server", true),
		chromedp.Flag("disable-features", "Translate,OptimizationHints,MediaRouter,DialMediaRouteProvider,AutofillServerCommunication"),
	}
	base, cancelBase := context.WithTimeout(context.Background(), timeout)
	actx, cancelAlloc := chromedp.NewExecAllocator(base, opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	b = &Browser{Ctx: ctx}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancelCtx()
			cancelAlloc() // waits for the browser process to exit
			cancelBase()
			_ = os.RemoveAll(dir)
		})
	}
	// Start the browser and the tab, then record what it logs and asks for.
	if err := chromedp.Listen(ctx, func(ev any) {
		if e, ok := ev.(*network.EventRequestWillBeSent); ok {
			b.mu.Lock()
			b.requests = append(b.requests, e.Request.URL)
			b.mu.Unlock()
		}
	}); err != nil {
		return nil, stop, fmt.Errorf("start chromium %s: %w", exe, err)
	}
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			b.mu.Lock()
			b.console = append(b.console, m)
			b.mu.Unlock()
		}
	}()
	return b, stop, nil
}

// Problems returns the console messages of type error, warning or
// exception, and every CSP report, as text.
func (b *Browser) Problems() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, m := range b.console {
		if m.Type == chromedp.ConsoleError || m.Type == chromedp.ConsoleWarning || m.IsException() ||
			strings.Contains(m.Text, "Content Security Policy") {
			out = append(out, fmt.Sprintf("%s %s:%d", m, m.URL, m.Line+1))
		}
	}
	return out
}

// Console returns every console message so far, as text.
func (b *Browser) Console() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]string, 0, len(b.console))
	for _, m := range b.console {
		out = append(out, m.String())
	}
	return out
}

// Foreign returns the requests the tab made to any host other than
// origin's host and port (data: and blob: URLs are the page's own).
func (b *Browser) Foreign(origin string) []string {
	o, _ := url.Parse(origin)
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, r := range b.requests {
		u, err := url.Parse(r)
		if err != nil {
			out = append(out, r)
			continue
		}
		if u.Scheme == "data" || u.Scheme == "blob" || u.Scheme == "about" {
			continue
		}
		if u.Host != o.Host {
			out = append(out, r)
		}
	}
	return out
}

// Requests returns how many requests the tab made.
func (b *Browser) Requests() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.requests)
}

// Do runs actions in the tab, failing t with what on an error.
func (b *Browser) Do(t testing.TB, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(b.Ctx, actions...); err != nil {
		t.Fatalf("%s: %v\nconsole:\n%s", what, err, strings.Join(b.Console(), "\n"))
	}
}

// Eval evaluates a JavaScript expression in the tab (awaiting a promise)
// and decodes its value into T, failing t on an error.
func Eval[T any](t testing.TB, b *Browser, expr string) T {
	t.Helper()
	v, err := chromedp.Run(b.Ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("evaluate %s: %v\nconsole:\n%s", expr, err, strings.Join(b.Console(), "\n"))
	}
	return v
}

// Wait polls a JavaScript expression until it is truthy, failing t after
// timeout with what.
func Wait(t testing.TB, b *Browser, what, expr string, timeout time.Duration) {
	t.Helper()
	if _, err := chromedp.Run(b.Ctx, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingTimeout(timeout), chromedp.WithPollingInterval(50*time.Millisecond))); err != nil {
		t.Fatalf("waiting for %s (%s): %v\nconsole:\n%s%s", what, expr, err, strings.Join(b.Console(), "\n"), b.state())
	}
}

// state is the value of b.State on the page, for a failure's message.
func (b *Browser) state() string {
	if b.State == "" {
		return ""
	}
	ctx, cancel := context.WithTimeout(b.Ctx, 5*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[string](b.State))
	if err != nil {
		return "\npage state: " + err.Error()
	}
	return "\npage state: " + v
}
