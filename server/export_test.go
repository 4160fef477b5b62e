package server

import "time"

// SetNow makes s read the time from now (session expiry in tests).
func SetNow(s *Server, now func() time.Time) { s.now = now }
