// Package web is nanoseg's web page, built from web/src by web/build.mjs
// (cytoscape.js with the fcose layout, bundled by esbuild) into web/dist
// and embedded into the binary: the agent serves it (Handler) and `nanoseg
// graph --format html` inlines the same bundle into its export (AppJS,
// AppCSS). Nothing is fetched from anywhere else at run time.
//
// web/dist is committed, so `go build` works on a fresh clone without
// node; `make build` rebuilds it only when web/dist.sha256 (the inputs'
// hashes, committed with dist) no longer matches the sources, and
// TestDistIsBuiltFromSources fails when the committed dist is not what the
// sources build.
package web

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed dist
var dist embed.FS

// files is dist's content, rooted at dist/.
var files = func() fs.FS {
	sub, err := fs.Sub(dist, "dist")
	if err != nil {
		panic(err) // dist is embedded: it always exists
	}
	return sub
}()

// Files returns the built page: index.html, app.js, app.css, licenses.txt.
func Files() fs.FS { return files }

func mustRead(name string) []byte {
	b, err := fs.ReadFile(files, name)
	if err != nil {
		panic(err) // embedded at build time
	}
	return b
}

// IndexHTML returns the page's markup (dist/index.html), which loads
// app.css and app.js from the listener.
func IndexHTML() []byte { return mustRead("index.html") }

// AppJS returns the page's script bundle (dist/app.js).
func AppJS() []byte { return mustRead("app.js") }

// AppCSS returns the page's style sheet (dist/app.css).
func AppCSS() []byte { return mustRead("app.css") }

// Licenses returns the licence texts of the bundled libraries (dist/licenses.txt).
func Licenses() []byte { return mustRead("licenses.txt") }

// Handler serves the page: GET or HEAD of "/" (index.html), "/app.js",
// "/app.css", "/licenses.txt", with their content types (text/html,
// text/javascript, text/css, text/plain; charset utf-8), `Cache-Control:
// no-cache` (a new agent's page is picked up at once) and
// `X-Content-Type-Options: nosniff`. Any other path is 404, any other
// method 405. It adds no security headers of the API's (the server's CSP
// and authentication wrap it).
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		var name string
		switch r.URL.Path {
		case "/":
			name = "index.html"
		case "/app.js", "/app.css", "/licenses.txt":
			name = r.URL.Path[1:]
		default:
			// /index.html too: ServeFileFS would redirect it to /.
			http.NotFound(w, r)
			return
		}
		h := w.Header()
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Content-Type-Options", "nosniff")
		http.ServeFileFS(w, r, files, name)
	})
}
