// Command uishots saves screenshots of the live web page of a running
// agent: it opens the page in headless Chromium (internal/browsertest),
// logs in with the operator's token through the page's login form, waits
// for the graph, saves it, opens one workload's details panel by tapping
// its node and saves that. scripts/demo.sh runs it after the enforce step;
// make build builds it into bin/uishots.
//
// Usage:
//
//	uishots --url http://127.0.0.1:PORT --token-file FILE --out DIR [--workload shop/db] [--profile-dir DIR] [--timeout 30s]
//
// It writes DIR/ui-graph.png and DIR/ui-workload.png. Exit status 0 when
// both are written, 3 when there is no chromium on PATH (nothing written),
// 1 on any other error, with a message naming what failed.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/nanoseg/nanoseg/internal/browsertest"
)

func main() {
	url := flag.String("url", "", "the agent's TCP listener, e.g. http://127.0.0.1:8443 (required)")
	tokenFile := flag.String("token-file", "", "file holding the token to log in with (required)")
	out := flag.String("out", "out", "directory to write ui-graph.png and ui-workload.png to")
	workload := flag.String("workload", "shop/db", "the workload (namespace/name) whose details to capture")
	profile := flag.String("profile-dir", "", "directory to make Chromium's throwaway profile in (default: the system's temporary directory); removed on exit")
	timeout := flag.Duration("timeout", 30*time.Second, "bound on the whole run")
	flag.Parse()
	err := run(*url, *tokenFile, *out, *workload, *profile, *timeout)
	if errors.Is(err, browsertest.ErrNoChromium) {
		fmt.Fprintln(os.Stderr, "uishots:", err)
		os.Exit(3)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "uishots:", err)
		os.Exit(1)
	}
}

// pageState is what a failure reports of the page.
const pageState = `"logged out: " + document.body.classList.contains("logged-out") + "; status: " + (document.querySelector("#status") || {}).textContent + "; panel: " + ((document.querySelector("#panel-body") || {}).textContent || "").slice(0, 300)`

func run(url, tokenFile, out, workload, profile string, timeout time.Duration) error {
	switch {
	case url == "":
		return errors.New("--url: required (the agent's TCP listener)")
	case tokenFile == "":
		return errors.New("--token-file: required")
	case !strings.Contains(workload, "/"):
		return fmt.Errorf("--workload %q: want namespace/name", workload)
	}
	url = strings.TrimRight(url, "/")
	raw, err := os.ReadFile(tokenFile)
	if err != nil {
		return fmt.Errorf("--token-file: %w", err)
	}
	token := strings.TrimSpace(string(raw))
	if token == "" {
		return fmt.Errorf("--token-file %s: empty", tokenFile)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return fmt.Errorf("--out: %w", err)
	}

	b, stop, err := browsertest.Launch(timeout, profile)
	defer stop()
	if err != nil {
		return err
	}
	// An interrupt ends the browser and removes its profile before exiting.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		stop()
		os.Exit(130)
	}()

	ctx := b.Ctx
	wait := func(what, expr string, d time.Duration) error {
		if _, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingTimeout(d), chromedp.WithPollingInterval(50*time.Millisecond))); err != nil {
			return fmt.Errorf("waiting for %s: %v (page: %s)", what, err, state(ctx))
		}
		return nil
	}
	shot := func(name string) error {
		png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
		if err != nil {
			return fmt.Errorf("screenshot %s: %w", name, err)
		}
		path := filepath.Join(out, name)
		if err := os.WriteFile(path, png, 0o644); err != nil {
			return err
		}
		fmt.Printf("wrote %s (%d bytes)\n", path, len(png))
		return nil
	}

	if err := chromedp.Do(ctx, chromedp.Navigate(url+"/")); err != nil {
		return fmt.Errorf("open %s: %w", url, err)
	}
	if err := wait("the login form", `document.body.classList.contains("logged-out")`, 10*time.Second); err != nil {
		return err
	}
	if err := chromedp.Do(ctx, chromedp.SendKeys(chromedp.CSS("#login-token"), token), chromedp.Click(chromedp.CSS("#login-submit"))); err != nil {
		return fmt.Errorf("log in: %w", err)
	}
	if err := wait("the graph", `!document.body.classList.contains("logged-out") && window.nanoseg.view && window.nanoseg.view.layoutMs > 0 && nanoseg.view.cy.edges().length > 0`, 15*time.Second); err != nil {
		return err
	}
	if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](`nanoseg.view.cy.resize(); nanoseg.view.fit()`)); err != nil {
		return fmt.Errorf("fit the graph: %w", err)
	}
	time.Sleep(300 * time.Millisecond) // the fit's animation frame
	if err := shot("ui-graph.png"); err != nil {
		return err
	}

	id := strconv.Quote(workload)
	if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](`void nanoseg.view.cy.getElementById(`+id+`).emit("tap")`)); err != nil {
		return fmt.Errorf("open %s: %w", workload, err)
	}
	if err := wait(workload+"'s details", `document.querySelector("#panel").dataset.kind === "workload" && document.querySelector("#panel-title").textContent === `+id+` && document.querySelector("#wl-mode") !== null`, 10*time.Second); err != nil {
		return err
	}
	time.Sleep(300 * time.Millisecond)
	return shot("ui-workload.png")
}

// state returns what the page shows, for an error message.
func state(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[string](pageState))
	if err != nil {
		return err.Error()
	}
	return v
}
