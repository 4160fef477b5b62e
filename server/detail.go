package server

import (
	"net/http"
	"strings"
)

// detailRoutes registers the read routes of the web UI's panes
// (docs/api.md): edge and workload details, the matrix, the last
// evidence bundle.
//
//	GET /v1/edges/detail      from, to, port, window → controller.EdgeDetail
//	GET /v1/workloads/detail  workload               → controller.WorkloadDetail
//	GET /v1/matrix            namespace | workloads, ports → controller.Matrix
//	GET /v1/evidence/last                            → controller.ExportSummary (404: none)
func (a *Server) detailRoutes(rs *routes) {
	rs.handle("GET /v1/edges/detail", "", a.read(func(r *http.Request) (any, error) {
		w, err := window(r)
		if err != nil {
			return nil, err
		}
		q := r.URL.Query()
		return a.svc.EdgeDetail(q.Get("from"), q.Get("to"), q.Get("port"), w)
	}))
	rs.handle("GET /v1/workloads/detail", "", a.read(func(r *http.Request) (any, error) {
		return a.svc.WorkloadDetail(r.URL.Query().Get("workload"))
	}))
	rs.handle("GET /v1/matrix", "", a.read(func(r *http.Request) (any, error) {
		q := r.URL.Query()
		return a.svc.Matrix(q.Get("namespace"), list(q.Get("workloads")), list(q.Get("ports")))
	}))
	rs.handle("GET /v1/evidence/last", "", api(func(r *http.Request) (any, error) {
		return a.svc.LastExport()
	}))
}

// list splits a comma-separated query value, dropping empty items.
func list(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}
